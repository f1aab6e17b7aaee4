#!/usr/bin/python3
"""pp's reverse_md5 example on ppmpi: brute-force the integer behind an md5 digest.

The candidates are split into 128 range jobs. The master looks at the results in order and
stops at the first job that found the number; the jobs further on are still running or
queued, so it then waits for all of them with server.wait() before printing the statistics.

    python3 examples/reverse_md5.py [ncpus]          # workers spawned by the Server
    mpirun -np 3 python3 examples/reverse_md5.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/reverse_md5.py           # rank 0 python3, ranks 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import hashlib
import random
import sys
import time

START, END = 1, 4_000_000
PARTS = 128


def md5test(digest, start, end):
    """The integer x in [start, end) whose md5(str(x)) hex digest is digest, or None."""
    import hashlib  # imported in the job itself: the job needs nothing from the master's module

    for x in range(start, end):
        if hashlib.md5(str(x).encode()).hexdigest() == digest:
            return x
    return None


def search(server, digest):
    """Submits the 128 range jobs and returns the first non-None result, in range order."""
    step = (END - START) // PARTS + 1
    jobs = [server.submit(md5test, (digest, START + i * step, min(START + (i + 1) * step, END)))
            for i in range(PARTS)]
    found = None
    for job in jobs:
        found = job()
        if found is not None:
            break
    # The jobs after the one that found it still run (or wait in the queue): wait for them.
    server.wait()
    return found


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    server = ppmpi.Server(ncpus)
    print("Starting ppmpi with", server.get_ncpus(), "workers")
    # A secret from the middle third of the range (seeded: the same on every run), so the
    # answer arrives part-way through the jobs.
    secret = random.Random(1829182).randrange(START + (END - START) // 3,
                                              START + 2 * (END - START) // 3)
    digest = hashlib.md5(str(secret).encode()).hexdigest()
    print("Looking for the integer whose md5 is", digest)

    start = time.time()
    found = search(server, digest)
    print("Found", found, "in", round(time.time() - start, 3), "s")
    if found != secret:
        sys.exit(f"FAILED: found {found}, the md5 was of {secret}")
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
