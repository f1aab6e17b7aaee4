"""How this process was started, and what ppmpi does about it at import.

Three launch modes (README "Launch modes"):
1. ``python3 driver.py``: a singleton; the Server spawns worker processes itself (python3
   hosting the C++ worker loop, see spawn_command).
2. ``mpirun -np N python3 driver.py``: rank 0 is the master; ranks 1..N-1 become workers at
   ``import ppmpi`` and never run the driver's code past that import.
3. ``mpirun -np 1 python3 driver.py : -np N-1 ppmpi-worker`` (what ``ppmpirun`` runs).

Under Slurm, ``srun --mpi=pmix python3 driver.py`` is mode 2 with the ranks started by Slurm
instead of mpirun (found from PMIx's and Slurm's variables); there no worker can be spawned.
"""
import os
import sys

_RANK_SIZE_VARS = (("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"), ("PMI_RANK", "PMI_SIZE"))


def inside_worker():
    """True in a worker process (ppmpi-worker, or a rank already serving): no takeover, no master."""
    return os.environ.get("PPMPI_IN_WORKER") == "1"


def under_srun():
    """True in a task that srun started as an MPI rank (srun --mpi=pmix): PMIx names its
    rank, and no mpirun (whose ranks carry OMPI_COMM_WORLD_RANK) stands between. A batch
    script's own python3 has Slurm's variables too, but no PMIx rank: it runs alone."""
    env = os.environ
    return "PMIX_RANK" in env and "SLURM_STEP_ID" in env and "OMPI_COMM_WORLD_RANK" not in env


def _srun_rank_and_size():
    env = os.environ
    return env.get("SLURM_PROCID", env["PMIX_RANK"]), env.get("SLURM_STEP_NUM_TASKS",
                                                              env.get("SLURM_NTASKS"))


def world_rank_and_size():
    """(rank, size) of the MPI world this process was launched in; (0, 1) if launched alone
    or inside a worker."""
    if inside_worker():
        return 0, 1
    candidates = [(os.environ.get(r), os.environ.get(s)) for r, s in _RANK_SIZE_VARS]
    if under_srun():
        candidates.append(_srun_rank_and_size())
    for rank, size in candidates:
        if rank is not None and size is not None:
            try:
                return int(rank), int(size)
            except ValueError:
                continue
    return 0, 1


def worker_path():
    """The ppmpi-worker executable: $PPMPI_WORKER, else the one inside this package (the
    C++ host of MPMD worker ranks, ppmpirun)."""
    explicit = os.environ.get("PPMPI_WORKER")
    if explicit:
        return explicit
    return os.path.join(os.path.dirname(os.path.abspath(__file__)), "ppmpi-worker")


def spawn_command():
    """(program, args) that a Server spawns: this interpreter running ppmpi._worker_main (see
    _worker_main.py); ppmpi-worker instead with PPMPI_WORKER_PYTHON=0, or $PPMPI_WORKER if set."""
    if (os.environ.get("PPMPI_WORKER_PYTHON", "1") == "0" or os.environ.get("PPMPI_WORKER")
            or not sys.executable):
        return worker_path(), []
    # This very package, even if the driver found it through sys.path rather than PYTHONPATH.
    package_parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    # ppmpi's __init__ serves at once (spawned_by_a_server), as on mpirun's worker ranks, and
    # never returns; main() is only for an MPI whose spawn did not pass the environment.
    boot = (f"import sys; sys.path.insert(0, {package_parent!r}); "
            "import ppmpi._worker_main; ppmpi._worker_main.main()")
    return sys.executable, ["-c", boot]


def spawned_by_a_server():
    """True in a python3 that a Server spawned (the spawn's environment names the attempt,
    mpi_env.hpp): like a worker rank of an mpirun, it serves from the first line of ppmpi's
    __init__, so the rest of the package is imported while MPI starts (by the worker loop),
    not before (docs/performance.md: the spawns run one after another)."""
    return "PPMPI_SPAWN_ATTEMPT" in os.environ and not inside_worker()


def serve_if_worker_rank():
    """Mode 2 (ranks 1..N-1) and spawned workers: serve, and exit when the master lets us go."""
    rank, size = world_rank_and_size()
    if (size <= 1 or rank == 0) and not spawned_by_a_server():
        return
    from ._worker_main import main

    main()  # never returns: the driver's code after `import ppmpi` must not run on a worker


def detect_ncpus():
    """pp's autodetect: CPUs online."""
    try:
        n = os.sysconf("SC_NPROCESSORS_ONLN")
        if n > 0:
            return n
    except (ValueError, OSError, AttributeError):
        pass
    return os.cpu_count() or 1
