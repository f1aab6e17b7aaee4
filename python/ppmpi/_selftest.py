"""The 2-worker self-test of ``python3 -m ppmpi --check`` (_selfcheck.py): start, a job, an
array round trip, a worker killed and replaced, shutdown. Every wait is bounded.

Run alone, it is a child process of the check (main() below); under mpirun, rank 0 runs it
itself. The jobs are module-level functions, which a worker imports from here."""
import os
import signal
import socket
import sys
import time

# A loaded node starts workers slowly; a hung MPI start-up is the whole check's bound's business.
STEP_TIMEOUT_S = 60.0
WORKERS = 2
PASSED = "self-test passed"


class CheckFailed(Exception):
    """A step of the self-test went wrong; str() says which and how."""


# -- the jobs --------------------------------------------------------------------------------

def square(x):
    return x * x


def pid_after(seconds):
    """(pid, host) of the worker, after keeping it busy (so a second job lands elsewhere)."""
    time.sleep(seconds)
    return os.getpid(), socket.gethostname()


def doubled(data):
    """A numpy array times two, or bytes inverted."""
    return data * 2 if hasattr(data, "dtype") else bytes(b ^ 0xFF for b in data)


# -- bounded waits ---------------------------------------------------------------------------

def _await(predicate, what, timeout=STEP_TIMEOUT_S):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise CheckFailed(f"not within {timeout:.0f} s: {what}")
        time.sleep(0.05)


def _result(job, what):
    if not job.wait(STEP_TIMEOUT_S):
        raise CheckFailed(f"no result within {STEP_TIMEOUT_S:.0f} s: {what}")
    return job()


def _gone(pid):
    """True once pid has exited (a zombie waiting for its parent counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):  # ESRCH: it exited while being read
        return True
    return not fields or fields[0] in "ZX"


def _worker_pids(server):
    """{pid: host} of the server's workers (each kept busy while the other is asked)."""
    pids = {}
    deadline = time.monotonic() + STEP_TIMEOUT_S
    while len(pids) < WORKERS:
        if time.monotonic() > deadline:
            raise CheckFailed(f"only {len(pids)} distinct worker(s) answered within "
                              f"{STEP_TIMEOUT_S:.0f} s")
        jobs = [server.submit(pid_after, (0.3,)) for _ in range(WORKERS)]
        pids.update(_result(job, "which worker runs a job") for job in jobs)
    return pids


# -- the steps -------------------------------------------------------------------------------

def _start(server_box):
    import ppmpi
    from . import _core

    server_box.append(ppmpi.Server(WORKERS))  # the defaults a user gets
    _await(lambda: server_box[0].get_ncpus() == WORKERS, f"{WORKERS} workers serving")
    return f"MPI thread level {_core.mpi_thread_level() or 'unknown'}"


def _a_job(server):
    if _result(server.submit(square, (12,)), "square(12)") != 144:
        raise CheckFailed("square(12) did not come back as 144")


def _array_round_trip(server):
    try:
        import numpy
    except ImportError:  # ppmpi needs no numpy: bytes travel out-of-band all the same
        data = os.urandom(1 << 20)
        if _result(server.submit(doubled, (data,)), "bytes round trip") != doubled(data):
            raise CheckFailed("1 MiB of bytes came back changed") from None
        return "1 MiB of bytes (numpy is not installed)"
    data = numpy.arange(1 << 17, dtype=numpy.float64)  # 1 MiB
    back = _result(server.submit(doubled, (data,)), "array round trip")
    if not numpy.array_equal(back, data * 2):
        raise CheckFailed("a 1 MiB numpy array came back changed")
    return "1 MiB numpy float64 array"


def _kill_and_replace(server):
    before = _worker_pids(server)
    here = [pid for pid, host in before.items() if host == socket.gethostname()]
    if not here:
        return "skipped: no worker on this host to kill"
    victim = here[0]
    os.kill(victim, signal.SIGKILL)
    _await(lambda: _gone(victim), f"worker {victim} ends after SIGKILL")
    _await(lambda: server._stats()["workers_lost"] >= 1, "the dispatcher notices the loss")
    _await(lambda: server.get_ncpus() == WORKERS, f"{WORKERS} workers serving again")
    after = _worker_pids(server)
    new = sorted(set(after) - set(before))
    if victim in after or not new:
        raise CheckFailed(f"no replacement answered: workers before {sorted(before)}, "
                          f"after {sorted(after)}")
    return f"killed pid {victim}, replaced by pid {new[0]}"


def _shutdown(server):
    from . import _launch, _runtime

    pids = _worker_pids(server)
    server.destroy()
    _runtime.shutdown()  # what interpreter exit does: workers let go, MPI ended
    if _launch.world_rank_and_size()[1] == 1:  # world ranks wait for our exit instead
        _await(lambda: all(_gone(pid) for pid in pids), "the spawned workers exit")


def _run_step(say, name, body):
    """Runs body(); says how it went. Any error becomes CheckFailed naming the step."""
    started = time.monotonic()
    try:
        detail = body()
    except Exception as exc:
        say(f"  {name}: FAILED")
        text = str(exc) if isinstance(exc, CheckFailed) else f"{type(exc).__name__}: {exc}"
        raise CheckFailed(f"{name}: {text}") from exc
    extra = f"; {detail}" if detail else ""
    say(f"  {name}: ok ({time.monotonic() - started:.2f} s{extra})")


def self_test(say):
    """The self-test in this process; raises CheckFailed naming the failed step."""
    box = []
    _run_step(say, f"start {WORKERS} workers", lambda: _start(box))
    server = box[0]
    try:
        _run_step(say, "a job", lambda: _a_job(server))
        _run_step(say, "an array round trip", lambda: _array_round_trip(server))
        _run_step(say, "a worker killed and replaced", lambda: _kill_and_replace(server))
    except CheckFailed:
        server.destroy()
        raise
    _run_step(say, "shutdown", lambda: _shutdown(server))


def main():
    """The child process of ``python3 -m ppmpi --check``: exit status 0 once PASSED is said."""
    def say(line):
        print(line, flush=True)

    try:
        self_test(say)
    except CheckFailed as exc:
        say(f"FAILED: {exc}")
        sys.exit(1)
    say(PASSED)
