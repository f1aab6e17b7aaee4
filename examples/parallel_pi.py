#!/usr/bin/python3
"""Parallel jobs: each job is a small MPI program on k workers. pi by the midpoint rule, the
interval split over a job's ranks and summed with an allreduce on the job's own communicator,
next to ordinary jobs on the same server.

    python3 examples/parallel_pi.py [ncpus]          # workers spawned together by the Server
    mpirun -np 3 python3 examples/parallel_pi.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/parallel_pi.py
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import math
import sys


def pi_part(intervals):
    """This rank's share of the midpoint sum; the job's ranks add theirs up."""
    comm = ppmpi.comm()  # an mpi4py Intracomm of exactly this job's ranks
    rank, size = comm.Get_rank(), comm.Get_size()
    width = 1.0 / intervals
    mine = sum(4.0 / (1.0 + ((i + 0.5) * width) ** 2) for i in range(rank, intervals, size))
    return comm.allreduce(mine * width)  # every rank returns the total


def square(x):
    return x * x


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    server = ppmpi.Server(ncpus)
    ranks = min(2, server.get_ncpus())
    print(f"Starting ppmpi with {server.get_ncpus()} workers; pi on {ranks} ranks per job")
    jobs = {n: server.submit(pi_part, (n,), nranks=ranks) for n in (1000, 10_000, 100_000)}
    singles = [server.submit(square, (i,)) for i in range(10)]  # ordinary jobs, beside them
    ok = True
    for n, job in jobs.items():
        totals = job()  # one value per rank, in rank order
        error = abs(totals[0] - math.pi)
        print(f"{n:>7} intervals on {len(totals)} ranks: pi ~ {totals[0]:.12f} (error {error:.1e})")
        ok &= len(totals) == ranks and len(set(totals)) == 1 and error < 1e-6
    ok &= [job() for job in singles] == [i * i for i in range(10)]
    server.destroy()
    print("OK: all results checked" if ok else "FAILED: a parallel job's result was wrong")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
