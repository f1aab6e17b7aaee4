#!/usr/bin/python3
"""pp's dynamic_ncpus example on ppmpi: the same work with 1, 2, 4, 8, then 1 workers again.

set_ncpus(n) changes the number of workers while the server runs: growing spawns new workers
(MPI_Comm_spawn, also under mpirun), shrinking retires idle ones. Each round computes ln 2 from
the alternating harmonic series in 64 partial-sum jobs and prints its time. On a machine with
fewer cores than workers the extra workers only share the cores, so times stop improving.

    python3 examples/dynamic_ncpus.py               # workers spawned by the Server
    mpirun -np 3 python3 examples/dynamic_ncpus.py  # ranks 1..2 serve first, more are spawned
    ppmpirun -np 3 examples/dynamic_ncpus.py        # rank 0 python3, ranks 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import math
import sys
import time

TERMS = 1_000_000  # small: 8 workers may share 2 cores; the error is below 1/(TERMS + 1)
PARTS = 64
WORKER_COUNTS = (1, 2, 4, 8, 1)


def part_sum(start, end):
    """Sum of the terms (-1)**(k+1) / k for start <= k < end."""
    total = 0.0
    for k in range(start, end):
        if k % 2 == 0:
            total -= 1.0 / k
        else:
            total += 1.0 / k
    return total


def run_round(server):
    """Submits the 64 jobs, returns the sum of their results."""
    step = TERMS // PARTS + 1
    jobs = [server.submit(part_sum, (1 + i * step, min(1 + (i + 1) * step, TERMS + 1)))
            for i in range(PARTS)]
    return math.fsum(job() for job in jobs)


def main():
    server = ppmpi.Server()
    print("Starting ppmpi with", server.get_ncpus(), "workers")
    for ncpus in WORKER_COUNTS:
        server.set_ncpus(ncpus)
        # set_ncpus returns once the pool has its new size: check that it says so.
        if server.get_ncpus() != ncpus:
            sys.exit(f"FAILED: set_ncpus({ncpus}), then get_ncpus() = {server.get_ncpus()}")
        start = time.time()
        total = run_round(server)
        error = abs(math.log(2) - total)
        print(f"{server.get_ncpus()} workers: partial sum {total!r}, |ln 2 - sum| = "
              f"{error:.3e}, time elapsed {time.time() - start:.3f} s")
        # Alternating series: the error is at most the first term left out.
        if error > 1.0 / (TERMS + 1):
            sys.exit(f"FAILED: with {ncpus} workers the sum {total!r} is not ln 2")
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
