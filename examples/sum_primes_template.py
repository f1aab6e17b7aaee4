#!/usr/bin/python3
"""pp's sum_primes_template example on ppmpi: sum_primes through a Template.

A Template keeps the function, its dependencies and its modules, so each job is submitted
with its arguments only: template.submit(n).

    python3 examples/sum_primes_template.py [ncpus]       # workers spawned by the Server
    mpirun -np 3 python3 examples/sum_primes_template.py  # ranks 1..2 are the workers
    ppmpirun -np 3 examples/sum_primes_template.py        # rank 0 python3, 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import math
import sys
import time


def isprime(n):
    """True if n is prime."""
    if not isinstance(n, int):
        raise TypeError("argument passed to isprime is not of 'int' type")
    if n < 2:
        return False
    if n == 2:
        return True
    top = int(math.ceil(math.sqrt(n)))
    for i in range(2, top + 1):
        if n % i == 0:
            return False
    return True


def sum_primes(n):
    """Sum of the primes below n."""
    return sum(x for x in range(2, n) if isprime(x))


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    server = ppmpi.Server(ncpus)
    print("Starting ppmpi with", server.get_ncpus(), "workers")

    # Everything but the argument is fixed once, here.
    template = ppmpi.Template(server, sum_primes, (isprime,), ("math",))

    first = template.submit(100)
    print("Sum of primes below 100 is", first())
    if first() != 1060:
        sys.exit(f"FAILED: sum of primes below 100 is 1060, the job said {first()}")

    inputs = (100_000, 100_100, 100_200, 100_300, 100_400, 100_500, 100_600, 100_700)
    start = time.time()
    jobs = [(n, template.submit(n)) for n in inputs]
    for n, job in jobs:
        print("Sum of primes below", n, "is", job())
    print("Time elapsed:", round(time.time() - start, 3), "s")

    # Check against a serial run; every input is checked, at a couple of seconds' cost.
    wrong = [n for n, job in jobs if job() != sum_primes(n)]
    if wrong:
        sys.exit(f"FAILED: parallel result differs from serial for n in {wrong}")
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
