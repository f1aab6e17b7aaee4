#!/usr/bin/python3
"""pp's sum_primes example on ppmpi: the sum of primes below each n, in parallel.

    python3 examples/sum_primes.py [ncpus]          # workers spawned by the Server
    mpirun -np 3 python3 examples/sum_primes.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/sum_primes.py           # rank 0 python3, ranks 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import math
import sys
import time


def isprime(n):
    """True if n is prime."""
    if not isinstance(n, int):
        raise TypeError("argument passed to is_prime is not of 'int' type")
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
    # One small job first, as pp's example does: its answer is known by heart.
    first = server.submit(sum_primes, (100,), (isprime,), ("math",))
    print("Sum of primes below 100 is", first())
    assert first() == 1060, "sum of primes below 100 must be 1060"

    inputs = (100_000, 100_100, 100_200, 100_300, 100_400, 100_500, 100_600, 100_700)
    start = time.time()
    jobs = [(n, server.submit(sum_primes, (n,), (isprime,), ("math",))) for n in inputs]
    for n, job in jobs:
        print("Sum of primes below", n, "is", job())
    print("Time elapsed:", round(time.time() - start, 3), "s")
    expected = [sum_primes(n) for n in inputs[:2]]
    assert [job() for _, job in jobs[:2]] == expected, "parallel result differs from serial"
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
