"""A worker process hosted by python3: what ranks 1..N-1 of ``mpirun python3 driver.py``
become at ``import ppmpi``, and what a Server spawns (``python3 -c "...import
ppmpi._worker_main"``, unless PPMPI_WORKER_PYTHON=0; ppmpi's __init__ then serves from its
first line). Named after worker_main.cpp, ppmpi-worker's own entry.

The worker loop is the C++ one (the comm thread owns MPI, this thread runs the jobs), hosted
by the same python3 that runs the driver: same version, same packages, and the full speed of
the interpreter binary. ppmpi-worker, which embeds CPython, ran a pure-Python loop ~8 %
slower even linked with the static libpython (README "Launch modes"); it hosts the worker
ranks that ppmpirun starts."""
import os
import signal
import sys


def complete_the_package(package):
    """Adds the package's public names (what its __init__ would have, past its first line)."""
    from . import _api

    for name in _api.__all__ + ["version", "__version__", "__all__"]:
        setattr(package, name, getattr(_api, name))


def complete_on_demand():
    """A worker serves from the first line of ppmpi's __init__ (_launch), which leaves the
    package half made. Its public names are added the first time something asks for one (a
    job's module doing ``from ppmpi import Server``), not at start-up, where importing the
    client half of the package cost every worker ~35 ms of CPU."""
    package = sys.modules.get("ppmpi")
    if package is None or hasattr(package, "Server"):
        return

    def __getattr__(name):
        if name.startswith("_") and not name.startswith("__"):  # ``from . import _core``
            raise AttributeError(f"module 'ppmpi' has no attribute {name!r}")
        del package.__getattr__
        complete_the_package(package)
        try:
            return package.__dict__[name]
        except KeyError:
            raise AttributeError(f"module 'ppmpi' has no attribute {name!r}") from None

    package.__getattr__ = __getattr__


def main():
    os.environ["PPMPI_IN_WORKER"] = "1"  # before ppmpi's __init__: no takeover, no master
    # mpirun forwards SIGUSR1 to every rank; it asks the master for statistics.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
    complete_on_demand()
    from . import _core

    status = _core.serve_worker()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            pass
    os._exit(status)  # no interpreter teardown (MPI is gone already), and no driver code


if __name__ == "__main__":
    main()
