"""ppmpi's logging: every message, from Python or from the C++ dispatcher, goes to the
``logging`` logger named "ppmpi". With no configuration, Python shows warnings and errors on
stderr (its last-resort handler); debug() is the switch like ppserver's ``-d``.

The dispatcher thread never takes the GIL: its messages wait in a bounded queue in C++ and a
daemon thread here ("ppmpi-log") hands them to logging."""
import logging
import os
import threading

log = logging.getLogger("ppmpi")

DEBUG_FORMAT = "%(asctime)s - %(name)s - %(levelname)s - %(message)s"  # ppserver's default
_PUMP_SLICE_S = 0.25

_lock = threading.Lock()
_pump = None
_stopping = threading.Event()
_handler = None


def debug(on=True):
    """Switches debug logging on (or off): the "ppmpi" logger at DEBUG, a stderr handler if
    it has none, and the dispatcher's own debug messages (jobs sent and done, workers joining
    and leaving). Also on at import when PPMPI_DEBUG=1, and with ``ppmpirun -d``."""
    global _handler
    log.setLevel(logging.DEBUG if on else logging.NOTSET)
    if on and not log.handlers:
        _handler = logging.StreamHandler()
        _handler.setFormatter(logging.Formatter(DEBUG_FORMAT))
        log.addHandler(_handler)
    elif not on and _handler is not None:
        log.removeHandler(_handler)
        _handler = None
    _sync_core_level()


def _sync_core_level():
    from . import _core

    _core.set_log_level(min(max(log.getEffectiveLevel(), logging.DEBUG), logging.ERROR))


def _forward(records):
    for level, text in records:
        log.log(level, "%s", text)


def _run_pump():
    from . import _core

    while not _stopping.is_set():
        _forward(_core.next_log_records(_PUMP_SLICE_S))


def start():
    """Routes the C++ side's messages into logging (when the dispatcher starts)."""
    global _pump
    from . import _core

    with _lock:
        if _pump is not None:
            return
        _stopping.clear()
        _sync_core_level()
        _core.capture_logs(True)
        _pump = threading.Thread(target=_run_pump, name="ppmpi-log", daemon=True)
        _pump.start()


def stop():
    """After the dispatcher ended: the pump ends and what it had not forwarded yet is logged
    here; later C++ messages go straight to stderr."""
    global _pump
    from . import _core

    with _lock:
        pump, _pump = _pump, None
    if pump is None:
        return
    _stopping.set()
    _core.capture_logs(False)  # also wakes the pump
    pump.join(timeout=2 * _PUMP_SLICE_S)
    _forward(_core.next_log_records(0.0))


if os.environ.get("PPMPI_DEBUG", "") not in ("", "0"):
    debug(True)
