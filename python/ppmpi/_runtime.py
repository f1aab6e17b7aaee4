"""The one dispatcher per process (MPI can be started once per process), shared by every
Server, and its orderly end at interpreter exit."""
import atexit
import logging
import threading
import weakref

from . import _launch, _logging
from ._tunables import SHUTDOWN_GRACE_S, from_env

log = logging.getLogger("ppmpi")

_lock = threading.Lock()
_master = None
_servers = weakref.WeakSet()


_left_behind = []  # a Master whose thread could not end (Master.stop returned False)


def master():
    """The process's dispatcher, started on first use."""
    global _master
    with _lock:
        if _master is None:
            from . import _core

            _logging.start()  # before the dispatcher runs: its messages go to logging
            program, args = _launch.spawn_command()
            _master = _core.Master(program, from_env("PPMPI_HEARTBEAT_MS", "heartbeat_ms"),
                                   from_env("PPMPI_MASTER_TIMEOUT_MS", "master_timeout_ms"),
                                   worker_args=args)
            atexit.register(shutdown)
        return _master


def world_workers():
    """How many ranks of an mpirun world serve as workers (0 when launched alone)."""
    rank, size = _launch.world_rank_and_size()
    return size - 1 if rank == 0 else 0


def register(server):
    _servers.add(server)


def live_servers():
    return [server for server in list(_servers) if not server.destroyed]


def shutdown():
    """Destroys every live Server, lets every worker go and ends MPI (at interpreter exit)."""
    global _master
    for server in list(_servers):
        try:
            server.destroy()
        except Exception as exc:  # keep going: the other servers and MPI must still end
            log.warning("ppmpi: error destroying a server at exit: %s", exc)
    with _lock:
        m, _master = _master, None
    if m is not None and not m.stop(SHUTDOWN_GRACE_S):
        # Its thread is stuck inside MPI (logged) and still uses it: keep it to the end.
        _left_behind.append(m)
    _logging.stop()
