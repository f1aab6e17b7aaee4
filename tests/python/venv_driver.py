"""Run by pip_install_check.sh with a venv's python, in each launch mode: jobs run, and the
driver and every worker run in that venv (its sys.prefix) with the ppmpi installed in it.

    python driver.py VENV

Ends with "OK: ..." and exit status 0, or "FAILED: ..." lines and exit status 1."""
import ppmpi  # first: under mpirun, ranks 1.. become workers here

import os
import sys
import time


def where(pause):
    """(pid, sys.prefix, the ppmpi package's directory) of the worker running this job."""
    time.sleep(pause)  # busy for a moment, so that the next job lands on another worker
    return os.getpid(), sys.prefix, os.path.dirname(sys.modules["ppmpi"].__file__)


def workers_seen(server, count, limit=60.0):
    seen = {}
    deadline = time.monotonic() + limit
    while len(seen) < count and time.monotonic() < deadline:
        jobs = [server.submit(where, (0.2,)) for _ in range(count)]
        for job in jobs:
            if not job.wait(limit):
                break
            pid, prefix, package = job()
            seen[pid] = (prefix, package)
    return seen


def check(venv):
    package = os.path.realpath(os.path.dirname(ppmpi.__file__))
    problems = []
    if os.path.realpath(sys.prefix) != venv:
        problems.append(f"the driver's sys.prefix is {sys.prefix}, not the venv {venv}")
    if not package.startswith(venv + os.sep):
        problems.append(f"the driver imported ppmpi from {package}, not from the venv")
    with ppmpi.Server(2) as server:
        jobs = [server.submit(pow, (i, 2)) for i in range(200)]
        if [job() for job in jobs] != [i * i for i in range(200)]:
            problems.append("wrong results")
        seen = workers_seen(server, 2)
    if len(seen) < 2:
        problems.append(f"only {len(seen)} distinct worker(s) ran jobs")
    for pid, (prefix, worker_package) in sorted(seen.items()):
        if os.path.realpath(prefix) != venv:
            problems.append(f"worker {pid} runs with sys.prefix {prefix}, not the venv {venv}")
        if os.path.realpath(worker_package) != package:
            problems.append(f"worker {pid} imported ppmpi from {worker_package}")
    return problems, len(seen)


def main():
    problems, workers = check(os.path.realpath(sys.argv[1]))
    for problem in problems:
        print(f"FAILED: {problem}")
    if problems:
        return 1
    print(f"OK: 200 jobs; the driver and {workers} workers run in the venv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
