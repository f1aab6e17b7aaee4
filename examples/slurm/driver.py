#!/usr/bin/python3
"""A small ppmpi driver for Slurm jobs: it checks its own results and says who served.

    python3 driver.py                    # the Server's default workers (the mpirun world's ranks)
    python3 driver.py --workers 3        # fail unless the Server starts with 3 workers
    python3 driver.py --grow 3           # then set_ncpus(3): workers beyond the world are spawned
    python3 driver.py --grow-refused 3   # set_ncpus(3) must raise (srun: no spawning), then go on

Used by the *.sbatch scripts next to it (each explains itself in its comments). It submits
4 jobs per worker; each job sums the primes below some n, sleeps a little (so that every
worker gets jobs even on a machine with fewer cores than workers) and returns the host, pid
and Slurm/MPI rank variables of the process that ran it. The driver compares every result
with its own serial computation, checks that every worker ran at least one job, prints the
statistics table (server.print_stats()) and, when all is well, ends with the line

    OK: all results checked (N jobs on W workers)

Under `mpirun --enable-recovery` mpirun's exit status says nothing (it is 0 whatever rank 0
did), so look for that line in the job's output; a failure prints "FAILED: ..." and exits 1.
"""
import ppmpi  # first: under mpirun, ranks 1..N-1 become workers here and run nothing below

import argparse
import os
import socket
import sys
import time

RANK_VARS = ("SLURM_PROCID", "PMIX_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK")


def sum_primes(n):
    """Sum of the primes below n (trial division: a few milliseconds of work)."""
    total = 0
    for x in range(2, n):
        if all(x % d for d in range(2, int(x ** 0.5) + 1)):
            total += x
    return total


def job(n, nap):
    """One job: the sum of primes below n, and who computed it."""
    import os
    import socket
    import time

    time.sleep(nap)
    ranks = {v: os.environ[v] for v in RANK_VARS if v in os.environ}
    return sum_primes(n), socket.gethostname(), os.getpid(), ranks


def fail(message):
    print("FAILED:", message, flush=True)
    sys.exit(1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, help="fail unless the Server starts with this many")
    parser.add_argument("--grow", type=int, help="then set_ncpus(GROW) and check get_ncpus()")
    parser.add_argument("--grow-refused", type=int, metavar="N",
                        help="set_ncpus(N) must raise RuntimeError (under srun no worker can be "
                             "spawned); the driver then goes on with the workers it has")
    parser.add_argument("--jobs-per-worker", type=int, default=4)
    parser.add_argument("--nap", type=float, default=0.2, help="seconds each job sleeps")
    opts = parser.parse_args()

    here = {v: os.environ[v] for v in ("SLURM_JOB_ID", "SLURM_NTASKS", "SLURM_PROCID",
                                        "OMPI_COMM_WORLD_SIZE", "PMIX_RANK") if v in os.environ}
    print(f"driver on {socket.gethostname()} pid {os.getpid()}, {here}", flush=True)

    server = ppmpi.Server()
    print("Starting ppmpi with", server.get_ncpus(), "workers", flush=True)
    if opts.workers is not None and server.get_ncpus() != opts.workers:
        fail(f"expected {opts.workers} workers at start, got {server.get_ncpus()}")
    if opts.grow is not None:
        start = time.time()
        server.set_ncpus(opts.grow)
        if server.get_ncpus() != opts.grow:
            fail(f"set_ncpus({opts.grow}), then get_ncpus() = {server.get_ncpus()}")
        print(f"set_ncpus({opts.grow}): now {server.get_ncpus()} workers "
              f"({time.time() - start:.2f} s)", flush=True)

    if opts.grow_refused is not None:
        before, start = server.get_ncpus(), time.time()
        try:
            server.set_ncpus(opts.grow_refused)
        except RuntimeError as exc:
            print(f"set_ncpus({opts.grow_refused}) refused in {time.time() - start:.2f} s: {exc}",
                  flush=True)
        else:
            fail(f"set_ncpus({opts.grow_refused}) did not raise: {server.get_ncpus()} workers")
        if server.get_ncpus() != before:
            fail(f"after the refused set_ncpus, {server.get_ncpus()} workers instead of {before}")

    nworkers = server.get_ncpus()
    inputs = [2000 + 100 * i for i in range(opts.jobs_per_worker * nworkers)]
    start = time.time()
    jobs = [(n, server.submit(job, (n, opts.nap), (sum_primes,)))
            for n in inputs]
    served = {}
    last_ranks = {}
    for n, j in jobs:
        value, host, pid, ranks = j()
        if value != sum_primes(n):
            fail(f"sum of primes below {n}: got {value}, expected {sum_primes(n)}")
        served.setdefault((host, pid), []).append(n)
        last_ranks = ranks
    print(f"{len(jobs)} jobs in {time.time() - start:.2f} s, served by:")
    for (host, pid), ns in sorted(served.items()):
        print(f"  {host} pid {pid}: {len(ns)} jobs")
    print("rank variables seen by the last job's worker:", last_ranks)

    server.print_stats()
    busy = [label for label, s in server.get_stats().items() if s.njobs > 0]
    if len(busy) != nworkers or len(served) != nworkers:
        fail(f"{nworkers} workers, but {len(busy)} ran jobs (stats) from {len(served)} processes")
    server.destroy()
    print(f"OK: all results checked ({len(jobs)} jobs on {nworkers} workers)", flush=True)


if __name__ == "__main__":
    main()
