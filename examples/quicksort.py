#!/usr/bin/python3
"""pp's quicksort example on ppmpi: jobs mixed into ordinary data.

The master partitions the list DEPTH levels deep (2**DEPTH pieces, at most); instead of
sorting a piece it submits it as a job running the same quicksort and puts the job itself in
the result list where the sorted piece belongs. The caller then walks that list, calling each
job (x()) and splicing its sorted piece in.

    python3 examples/quicksort.py [ncpus]          # workers spawned by the Server
    mpirun -np 3 python3 examples/quicksort.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/quicksort.py           # rank 0 python3, ranks 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import random
import sys
import time

SIZE = 100_000
DEPTH = 5  # 2**5 = 32 jobs


def quicksort(a, n=-1, srv=None):
    """Sorts a. With n > 0 it recurses n levels and then, at n == 0, returns [job] instead of
    the sorted piece: a one-element list holding a job that sorts it. With the default n = -1
    (as in the jobs themselves) n never reaches 0 and the whole list is sorted here."""
    if len(a) <= 1:
        return a
    if n == 0:
        return [srv.submit(quicksort, (a,))]
    pivot = a[0]
    smaller = [x for x in a if x < pivot]
    rest = [x for x in a[1:] if x >= pivot]
    return quicksort(smaller, n - 1, srv) + [pivot] + quicksort(rest, n - 1, srv)


def flatten(mixed):
    """Numbers stay, callables (the jobs) are called and their sorted pieces spliced in."""
    output = []
    for x in mixed:
        if callable(x):
            output.extend(x())
        else:
            output.append(x)
    return output


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    server = ppmpi.Server(ncpus)
    print("Starting ppmpi with", server.get_ncpus(), "workers")
    data = random.Random(20240611).choices(range(100_000_000), k=SIZE)  # seeded: reproducible

    start = time.time()
    mixed = quicksort(data, DEPTH, server)
    njobs = sum(1 for x in mixed if callable(x))
    output = flatten(mixed)
    print(f"Sorted {SIZE} numbers with {njobs} jobs in {time.time() - start:.3f} s")
    print("First 10:", output[:10])

    if njobs == 0:
        sys.exit("FAILED: no job was submitted")
    if output != sorted(data):
        sys.exit("FAILED: the output is not sorted(input)")
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
