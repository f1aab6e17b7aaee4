"""The Python side's tunables, in one place: how long it waits and how deep it pipelines
(server.py, _completions.py, job.py, _runtime.py). The dispatcher's and workers' own (heartbeat
interval, timeouts) are C++'s, exported as _core.DEFAULTS and read here with their environment
variables (from_env); the README's "Configuration reference" lists every variable."""
import os

# Waits happen in slices so that Ctrl-C reaches the driver within one slice.
WAIT_SLICE_S = 0.25
# A control call into the dispatcher thread (cancel, resize, stats, destroy) answers within
# this bound or raises; the dispatcher answers in microseconds unless it is stuck.
CONTROL_TIMEOUT_S = 120.0
# Creating a pool or resizing it: the spawns run in the background, so this only bounds the
# control call itself.
CREATE_TIMEOUT_S = 60.0
# Server() and set_ncpus() return once their new workers said Hello (~0.25 s per spawn), so
# the first jobs do not pay for start-up. Bounded: a spawn that hangs is retried after 3 s and
# 6 s (spawn_queue.hpp); past this the jobs simply queue for the workers still starting.
START_WAIT_S = 10.0
# Server(ppservers=...) with local workers waits this long at most for each listed server's
# first contact (ms on a LAN), so the first jobs are balanced over the servers too.
FIRST_CONTACT_WAIT_S = 2.0
# Most jobs in flight per worker; the dispatcher pipelines only short jobs (scheduler.hpp).
PIPELINE_MAX = 64
# At interpreter exit: the workers' shutdown and the dispatcher thread's end (PPMPI_SHUTDOWN_GRACE).
SHUTDOWN_GRACE_S = float(os.environ.get("PPMPI_SHUTDOWN_GRACE", "5"))
# Most a future's result() waits, after the future is done, for the notifier thread to let go
# of it (microseconds: a bound, not a wait that is expected).
SETTLE_WAIT_S = 1.0


def from_env(variable, name):
    """A tunable of the dispatcher and its workers: its environment variable if set, else the
    default C++ declares (_core.DEFAULTS[name])."""
    from . import _core

    default = _core.DEFAULTS[name]
    value = os.environ.get(variable)
    if value is None:
        return default
    kind = "an integer" if isinstance(default, int) else "a number"
    try:
        return type(default)(value)
    except ValueError:
        raise ValueError(f"{variable}={value!r}: expected {kind}") from None
