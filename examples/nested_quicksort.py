#!/usr/bin/python3
"""pp's quicksort with the recursion on the workers: a job partitions its piece and submits its
two halves as jobs of its own (ppmpi.get_server()), down to CUTOFF elements, then waits for
them. pp had to recurse on the master; here a job waiting for its children lends its worker to
them, so this finishes on one worker too.

    python3 examples/nested_quicksort.py [ncpus]          # workers spawned by the Server
    mpirun -np 3 python3 examples/nested_quicksort.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/nested_quicksort.py
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import random
import sys
import time

SIZE = 100_000
CUTOFF = 5_000  # pieces this small are sorted where they are


def quicksort(a):
    if len(a) <= CUTOFF:
        return sorted(a)
    pivot = a[len(a) // 2]
    smaller = [x for x in a if x < pivot]
    equal = [x for x in a if x == pivot]
    larger = [x for x in a if x > pivot]
    server = ppmpi.get_server()  # inside a job: children of this job, on the same workers
    left, right = server.submit(quicksort, (smaller,)), server.submit(quicksort, (larger,))
    return left() + equal + right()


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    with ppmpi.Server(ncpus) as server:
        print("Starting ppmpi with", server.get_ncpus(), "workers")
        data = random.Random(20240611).choices(range(100_000_000), k=SIZE)
        start = time.time()
        output = server.submit(quicksort, (data,))()
        print(f"Sorted {SIZE} numbers by nested jobs in {time.time() - start:.3f} s")
        print("First 10:", output[:10])
    ok = output == sorted(data)
    print("OK: all results checked" if ok else "FAILED: the list is not sorted")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
