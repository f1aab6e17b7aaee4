"""The fault cases in sequence on ONE server, as a user's driver would meet them: a killed
worker, a stopped worker, a job past its time limit, a poison job, hostile jobs, bad input, and
a server left with no worker. After each case every result must be right and the pool must be
back to its size (lost workers are replaced in every launch mode). Run by CTest alone and under
`mpirun --enable-recovery -np 4` (the first workers are then world ranks). Last line on success:
"OK: all fault cases passed".

PPMPI_WORKER must name an executable wrapper of ppmpi-worker that this script may chmod: the
last case makes it unusable (so no replacement can start), then usable again for set_ncpus.

Only processes this server started are signalled, by the pids its jobs report."""
import os
import signal
import stat
import sys
import time

import ppmpi
from helpers import gone  # this directory: the job module of the tests

N = 3
WORKER = os.environ["PPMPI_WORKER"]


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def die():
    os._exit(9)


def exit_job():
    sys.exit(3)


def segfault():
    import ctypes
    ctypes.string_at(0)


def lock_result():
    import threading
    return threading.Lock()


def check(condition, what):
    if not condition:
        raise SystemExit(f"FAILED: {what}")
    print("ok:", what, flush=True)


def wait_until(predicate, seconds=30.0):
    deadline = time.monotonic() + seconds
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def worker_pids(server):
    jobs = [server.submit(pid_after, (0.3,)) for _ in range(N)]
    return sorted({job() for job in jobs})


def serves_fully(server, tag):
    healed = wait_until(lambda: server.get_ncpus() == N)
    jobs = [server.submit(pow, (i, 2)) for i in range(200)]
    check(healed and [j() for j in jobs] == [i * i for i in range(200)],
          f"{tag}: the pool is back to {N} workers and every result is right")


def raises(kind, call, what):
    try:
        call()
    except kind as exc:
        check(True, f"{what}: {kind.__name__}: {str(exc)[:90]}")
        return
    except BaseException as exc:
        raise SystemExit(f"FAILED: {what}: {type(exc).__name__} instead of {kind.__name__}: {exc}")
    raise SystemExit(f"FAILED: {what}: no exception")


def kill_and_stop(server):
    for sig, name in ((signal.SIGKILL, "killed"), (signal.SIGSTOP, "stopped")):
        victim = worker_pids(server)[0]
        jobs = [server.submit(pid_after, (0.05,)) for _ in range(60)]
        os.kill(victim, sig)
        results = [j() for j in jobs]
        check(len(results) == 60 and all(isinstance(r, int) for r in results),
              f"a {name} worker: all 60 jobs answered")
        if sig == signal.SIGSTOP:  # the master kills a lost worker on its host
            check(wait_until(lambda: gone(victim)), "the stopped worker was ended by the master")
        serves_fully(server, f"after a {name} worker")


def bad_jobs(server):
    raises(ppmpi.JobTimeout, server.submit(time.sleep, (60,), timeout=1.0), "a job past its timeout")
    serves_fully(server, "after a time-out")
    raises(ppmpi.WorkerLost, server.submit(die), "a poison job (kills every worker it runs on)")
    serves_fully(server, "after a poison job")
    raises(ppmpi.JobExit, server.submit(exit_job), "a job calling sys.exit")
    raises(ppmpi.WorkerLost, server.submit(segfault), "a job that segfaults")
    raises(ppmpi.ResultPicklingError, server.submit(lock_result), "a result that cannot be pickled")
    raises(ZeroDivisionError, server.submit(divmod, (1, 0)), "a job raising")
    serves_fully(server, "after hostile jobs")
    raises(TypeError, lambda: server.submit("not callable"), "a job that is not callable")
    raises(TypeError, lambda: server.submit(pow, [1, 2]), "args that are not a tuple")
    raises(ValueError, lambda: server.set_ncpus(-1), "set_ncpus(-1)")
    serves_fully(server, "after bad input")


def no_workers_left(server):
    # Every worker up first: a spawn still running when the program becomes unusable would
    # fail only after its retries (an exec failure makes Open MPI's spawn hang, not fail).
    found = []

    def all_up():
        found[:] = worker_pids(server)
        return len(found) == N

    check(wait_until(all_up), f"{N} workers up")
    mode = os.stat(WORKER).st_mode
    os.chmod(WORKER, mode & ~(stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH))
    try:
        queued = [server.submit(time.sleep, (0.5,)) for _ in range(4 * N)]
        for pid in found:
            os.kill(pid, signal.SIGKILL)
        check(wait_until(lambda: server.get_ncpus() == 0), "no replacement could start: 0 workers")
        started = time.monotonic()
        server.wait()
        check(time.monotonic() - started < 10, "wait() returned")
        errors = set()
        for job in queued:
            try:
                job()
            except (ppmpi.NoWorkers, ppmpi.WorkerLost) as exc:
                errors.add(type(exc).__name__)
        check("NoWorkers" in errors, "the jobs left waiting failed with NoWorkers")
        raises(ppmpi.NoWorkers, server.submit(abs, (-1,)), "a job submitted with no worker")
    finally:
        os.chmod(WORKER, mode)
    server.set_ncpus(N)
    serves_fully(server, "after set_ncpus brought the workers back")


def main():
    started = time.monotonic()
    server = ppmpi.Server(N, worker_timeout=3.0, max_retries=2)
    try:
        kill_and_stop(server)
        bad_jobs(server)
        no_workers_left(server)
    finally:
        server.destroy()
    print(f"OK: all fault cases passed in {time.monotonic() - started:.1f} s", flush=True)


if __name__ == "__main__":
    main()
