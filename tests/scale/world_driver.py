"""A driver for many world ranks (tests/scale/world_check.py runs it under mpirun -np N+1).
Each case checks its own results and ends with `SCALE-OK <case>`; a failed check prints
`SCALE-FAILED: <why>` and exits 1.

    world_driver.py CASE

cases:
  jobs      every worker runs 100 ms sleep jobs and a burst of no-op jobs: every result right,
            every worker used, none lost
  overload  the same under a CPU hog (two busy processes per core, 30 s, started and killed
            here by pid) while one worker is SIGSTOPped: the stopped worker, and only it, is
            declared lost, the jobs it held run elsewhere, every result is right, and every
            worker left (with a replacement, if one could start) runs jobs after the hog
"""
import ppmpi  # first: ranks 1..N become workers here

import os
import signal
import subprocess
import sys
import time

HOG_SECONDS = 30.0
HOG = "import time\nend = time.monotonic() + {s}\nwhile time.monotonic() < end: pass\n"


def sleep_job(i, seconds):
    import os
    import time

    time.sleep(seconds)
    return i, os.getpid()


def noop(i):
    return i


def fail(message):
    print(f"SCALE-FAILED: {message}", flush=True)
    sys.exit(1)


def run_batch(server, count, seconds, before_results=None):
    """count sleep jobs; calls before_results() once the first result is in (by then every
    worker holds jobs). Returns the pids that answered; fails on a wrong result."""
    jobs = [server.submit(sleep_job, (i, seconds)) for i in range(count)]
    pids = set()
    for i, job in enumerate(jobs):
        value, pid = job()
        if value != i:
            fail(f"job {i} gave {value}")
        pids.add(pid)
        if i == 0 and before_results is not None:
            before_results()
    return pids


def noop_burst(server, count):
    t = time.monotonic()
    jobs = [server.submit(noop, (i,)) for i in range(count)]
    if [job() for job in jobs] != list(range(count)):
        fail("a no-op job gave a wrong result")
    return count / (time.monotonic() - t)


def case_jobs(server, n):
    t = time.monotonic()
    pids = run_batch(server, 5 * n, 0.1)
    efficiency = 0.5 / (time.monotonic() - t)
    if len(pids) != n:
        fail(f"{len(pids)} of {n} workers ran jobs")
    rate = noop_burst(server, 20 * n)
    print(f"{n} workers: 100 ms jobs at efficiency {efficiency:.2f}, {rate:.0f} no-op jobs/s",
          flush=True)


def start_hogs():
    count = 2 * os.cpu_count()
    code = HOG.format(s=HOG_SECONDS)
    return [subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
            for _ in range(count)]


def case_overload(server, n):
    pids = run_batch(server, 2 * n, 0.05)  # every worker's pid
    victim = max(pids)
    hogs = start_hogs()
    print(f"{len(hogs)} CPU hogs for {HOG_SECONDS:.0f} s; SIGSTOP to worker pid {victim}",
          flush=True)
    stopped = False
    try:
        def stop_victim():
            nonlocal stopped
            os.kill(victim, signal.SIGSTOP)
            stopped = True

        end = time.monotonic() + HOG_SECONDS
        rounds = 0
        while time.monotonic() < end:
            answered = run_batch(server, 3 * n, 0.1, None if stopped else stop_victim)
            rounds += 1
            if rounds > 1 and victim in answered:
                fail(f"the stopped worker {victim} answered a job")
    finally:
        if stopped:  # the process this test stopped (ppmpi may have ended it already)
            try:
                os.kill(victim, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for hog in hogs:
            hog.kill()
            hog.wait()
    stats = server._stats()
    print(f"{rounds} rounds of {3 * n} jobs under the hogs; workers lost: "
          f"{stats['workers_lost']}, jobs moved: {stats['jobs_requeued']}", flush=True)
    if stats["workers_lost"] != 1:
        fail(f"{stats['workers_lost']} workers lost; only the stopped one should be")
    if stats["jobs_requeued"] < 1:
        fail("the stopped worker's jobs were never moved")
    now = server.get_ncpus()  # the survivors, and the stopped worker's replacement if it came
    if now < n - 1 or len(run_batch(server, 2 * now, 0.05)) != now:
        fail(f"not all of the {now} workers run jobs after the hog")
    print(f"after the hog: {now} workers run jobs", flush=True)


def main():
    case = sys.argv[1]
    t = time.monotonic()
    server = ppmpi.Server()
    n = server.get_ncpus()
    print(f"{n} workers; Server() took {time.monotonic() - t:.1f} s", flush=True)
    if case == "jobs":
        case_jobs(server, n)
        if server._stats()["workers_lost"]:
            fail(f"{server._stats()['workers_lost']} workers lost")
    elif case == "overload":
        case_overload(server, n)
    else:
        fail(f"unknown case {case}")
    t = time.monotonic()
    server.destroy()
    print(f"destroy took {time.monotonic() - t:.2f} s", flush=True)
    print(f"SCALE-OK {case}", flush=True)


if __name__ == "__main__":
    main()
