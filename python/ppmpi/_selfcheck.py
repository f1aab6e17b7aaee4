"""``python3 -m ppmpi --check``: what ppmpi finds on this node (its, Python's, MPI's and
Boost's versions, the launch mode it would use and why), then the 2-worker self-test of
_selftest.py; ends with ``OK``, or with what is wrong and what to do (exit status 1).

Launched alone, the self-test runs in a child process: an MPI that fails to start may end its
process at once, or hang, and the check must still say why (from the child's output, Open
MPI's messages included) within its bound. Under mpirun or srun the world's ranks are the
workers, so rank 0 runs it in its own process, under a watchdog."""
import os
import re
import signal
import subprocess
import sys
import threading

from . import _launch, _selftest

CHECK_TIMEOUT_S = float(os.environ.get("PPMPI_CHECK_TIMEOUT", "240"))

# What went wrong, recognised in the self-test's output, and what to do about it:
# (pattern, problem, remedy); {0} is the pattern's first group. The first match wins.
KNOWN_PROBLEMS = [
    (r"allow-run-as-root|OMPI_ALLOW_RUN_AS_ROOT",
     "Open MPI refuses to start as root",
     "run as an ordinary user; in a container where root is the only user, set "
     "OMPI_ALLOW_RUN_AS_ROOT=1 and OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1"),
    (r"_core cannot be loaded|cannot open shared object|undefined symbol",
     "ppmpi's compiled module _core does not load here",
     "reinstall ppmpi against this node's MPI and Python (README, \"pip install into a "
     "venv\"); an MPI outside the system's library paths needs its lib/ on LD_LIBRARY_PATH"),
    (r"No module named '([^'.]+)",
     "a Python module is missing: {0}",
     "install it for this Python ({0} from pip, or Debian's python3-{0})"),
    (r"is not an executable file",
     "the worker program is missing or not executable",
     "reinstall ppmpi (its ppmpi-worker lives inside the package), or correct PPMPI_WORKER"),
    (r"btl_tcp|oob_tcp|connect\(\) to \S+ failed|[Uu]nreachable|unable to connect",
     "MPI's processes could not reach each other over TCP",
     "name the network interface to use: OMPI_MCA_btl_tcp_if_include and "
     "OMPI_MCA_oob_tcp_if_include (lo on a single host)"),
    (r"orted\b.*(not found|No such file)|ORTE was unable|ORTE_ERROR_LOG|PMIX_ERROR",
     "Open MPI's runtime could not start",
     "check that `mpirun -np 2 hostname` works on this node (Debian: openmpi-bin), with the "
     "MPI that ppmpi was built against first on PATH"),
]


def facts():
    """[(label, value)]: versions and paths. Raises _selftest.CheckFailed if _core does not load."""
    from . import __version__

    rows = [("ppmpi", f"{__version__} ({os.path.dirname(os.path.abspath(__file__))})"),
            ("Python", f"{sys.version.split()[0]} ({sys.executable})")]
    try:
        from . import _core
    except ImportError as exc:
        raise _selftest.CheckFailed(f"ppmpi's _core cannot be loaded: {exc}") from None
    library = (_core.mpi_library_version().strip() or "unknown").splitlines()[0]
    rows += [("MPI", library.split(", package:")[0]),  # "Open MPI v4.1.4, package: ..."
             ("Boost", _core.BOOST_VERSION.replace("_", "."))]
    worker = _launch.worker_path()
    state = "executable" if os.access(worker, os.X_OK) else "MISSING or not executable"
    rows.append(("ppmpi-worker", f"{worker} ({state})"))
    return rows


def launch_mode():
    """(mode, why), numbered as in README "Launch modes"."""
    rank, size = _launch.world_rank_and_size()
    if size > 1:
        who = "srun" if _launch.under_srun() else "mpirun"
        # Open MPI lists the ranks of each app context ("1 2"): ppmpirun's MPMD has two.
        if len(os.environ.get("OMPI_APP_CTX_NUM_PROCS", "").split()) > 1:
            return ("3. MPMD (ppmpirun)", f"rank {rank} of {size} started by {who} beside "
                    "ranks of another program (ppmpi-worker), which serve as the workers")
        return ("2. mpirun", f"rank {rank} of {size} started by {who}: ranks 1..{size - 1} "
                "serve as workers from `import ppmpi` on")
    program, args = _launch.spawn_command()
    what = "this Python running ppmpi._worker_main" if args else "ppmpi-worker"
    return ("1. alone", "no MPI world in the environment (no OMPI_COMM_WORLD_SIZE, PMI_SIZE or "
            f"srun rank): a Server spawns its workers (MPI_Comm_spawn of {what}, {program}); "
            f"ncpus defaults to the {_launch.detect_ncpus()} CPUs online")


def advice(output, timed_out=False):
    """(problem, remedy) for a failed self-test, from what it printed."""
    for pattern, problem, remedy in KNOWN_PROBLEMS:
        found = re.search(pattern, output)
        if found:
            group = found.group(1) if found.groups() else ""
            return problem.format(group), remedy.format(group)
    if timed_out:
        return (f"the self-test did not finish within {CHECK_TIMEOUT_S:g} s: MPI's start-up "
                "or a spawn hangs, or this node is overloaded",
                "check that `mpirun -np 2 hostname` works; PPMPI_DEBUG=1 python3 -m ppmpi "
                "--check logs where it stops; PPMPI_CHECK_TIMEOUT=<s> allows longer")
    return ("the self-test failed (see the step above)",
            "PPMPI_DEBUG=1 python3 -m ppmpi --check logs what ppmpi does")


def _child_command():
    """This Python, importing this very package (as _launch.spawn_command does)."""
    parent = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return [sys.executable, "-c", f"import sys; sys.path.insert(0, {parent!r}); "
            "from ppmpi import _selftest; _selftest.main()"]


def run_child(say):
    """The self-test in a child process, its output relayed; (status, output, timed_out)."""
    lines, done = [], threading.Event()
    proc = subprocess.Popen(_child_command(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, errors="replace", start_new_session=True)

    def relay():
        for line in proc.stdout:  # workers and MPI's daemon may hold the pipe open longer
            lines.append(line)
            if not done.is_set():
                say(line.rstrip("\n"))

    reader = threading.Thread(target=relay, daemon=True)
    reader.start()
    try:
        status = proc.wait(CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        said = "".join(lines)  # not what MPI's daemon says about the kill
        done.set()
        os.killpg(proc.pid, signal.SIGKILL)  # the child and what it started in its session
        proc.wait()
        return proc.returncode, said, True
    reader.join(5)
    done.set()
    return status, "".join(lines), False


def run_here(say):
    """The self-test in this process (rank 0 of an MPI world); (status, output, timed_out)."""
    said = []

    def tell(line):
        said.append(line + "\n")
        say(line)

    def expire():
        problem, remedy = advice("".join(said), timed_out=True)
        say(f"FAILED: {problem}\n  what to do: {remedy}")
        os._exit(1)

    watchdog = threading.Timer(CHECK_TIMEOUT_S, expire)
    watchdog.daemon = True
    watchdog.start()
    try:
        _selftest.self_test(tell)
        tell(_selftest.PASSED)
        return 0, "".join(said), False
    except _selftest.CheckFailed as exc:
        tell(f"FAILED: {exc}")
        return 1, "".join(said), False
    finally:
        watchdog.cancel()


def check(say=print):
    """Prints the facts, runs the self-test; returns the exit status (0: OK)."""
    try:
        rows = facts()
    except _selftest.CheckFailed as exc:
        problem, remedy = advice(str(exc))
        say(f"FAILED: {problem}\n  ({exc})\n  what to do: {remedy}")
        return 1
    for label, value in rows:
        say(f"{label + ':':14}{value}")
    mode, why = launch_mode()
    say(f"{'launch mode:':14}{mode}: {why}")
    say(f"self-test ({_selftest.WORKERS} workers, at most {CHECK_TIMEOUT_S:g} s):")
    sys.stdout.flush()
    in_world = _launch.world_rank_and_size()[1] > 1
    status, output, timed_out = (run_here if in_world else run_child)(say)
    if status == 0 and _selftest.PASSED in output:
        say("OK")
        return 0
    problem, remedy = advice(output, timed_out)
    say(f"FAILED: {problem}\n  what to do: {remedy}")
    return 1
