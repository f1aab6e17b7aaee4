"""ppmpi: Parallel Python's job server on MPI ranks.

    import ppmpi
    server = ppmpi.Server()
    job = server.submit(func, (arg,), depfuncs, modules)
    job()  # the result

Under ``mpirun -np N python3 driver.py``, ranks 1..N-1 become workers right here, at
``import ppmpi``, and never run the rest of the driver: import ppmpi before anything else
that should run on rank 0 only."""
from . import _launch

_launch.serve_if_worker_rank()  # worker ranks and spawned workers never return from this

from . import _runtime  # noqa: E402
from ._api import *  # noqa: E402,F401,F403
from ._api import __all__, __version__, version  # noqa: E402,F401

if _runtime.world_workers() > 0:
    # Rank 0 of an mpirun world: the worker ranks wait for us in MPI start-up, so start now
    # even if the driver never makes a Server (they are let go at exit).
    _runtime.master()
