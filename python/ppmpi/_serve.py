"""A worker process hosted by python3: what ranks 1..N-1 of ``mpirun python3 driver.py``
become at ``import ppmpi``, and what a Server spawns (``python3 -c "...import ppmpi._serve"``,
unless PPMPI_WORKER_PYTHON=0; ppmpi's __init__ then serves from its first line).

The worker loop is the C++ one (the comm thread owns MPI, this thread runs the jobs), hosted
by the same python3 that runs the driver: same version, same packages, and the full speed of
the interpreter binary. ppmpi-worker, which embeds CPython, ran a pure-Python loop ~8 %
slower even linked with the static libpython (README "Launch modes"); it hosts the worker
ranks that ppmpirun starts."""
import os
import signal
import sys


def main():
    os.environ["PPMPI_IN_WORKER"] = "1"  # before ppmpi's __init__: no takeover, no master
    # mpirun forwards SIGUSR1 to every rank; it asks the master for statistics.
    signal.signal(signal.SIGUSR1, signal.SIG_IGN)
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
