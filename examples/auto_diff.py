#!/usr/bin/python3
"""pp's auto_diff example on ppmpi: a bound method and a user class instance, shipped as jobs.

AD is forward-mode automatic differentiation: a value together with its derivative, carried
through + - * / ** by operator overloading. PartialSum.t_log sums a range of terms of the
Taylor series ln(1 + x) = x - x**2/2 + x**3/3 - ...; called with AD(x) it gives the
derivative 1/(1 + x) as well. The jobs are the BOUND METHODS of several PartialSum objects
(one range of terms each) with an AD argument; both classes live in __main__, which the
workers do not have, so ppmpi ships the classes along with the objects.

    python3 examples/auto_diff.py [ncpus]          # workers spawned by the Server
    mpirun -np 3 python3 examples/auto_diff.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/auto_diff.py           # rank 0 python3, ranks 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import math
import sys
import time

TERMS = 2000       # enough for |x| <= 0.9: the terms left out are below 0.9**2000
RANGES = 16        # jobs per x
POINTS = (-0.5, 0.1, 0.5, 0.9)


class AD:
    """A number x with its derivative dx (with respect to some variable): x + dx * eps."""

    def __init__(self, x, dx=1.0):
        self.x = float(x)
        self.dx = float(dx)

    @staticmethod
    def lift(value):
        """Plain numbers are constants: their derivative is 0."""
        return value if isinstance(value, AD) else AD(value, 0.0)

    def __add__(self, other):
        other = AD.lift(other)
        return AD(self.x + other.x, self.dx + other.dx)

    def __sub__(self, other):
        other = AD.lift(other)
        return AD(self.x - other.x, self.dx - other.dx)

    def __mul__(self, other):
        other = AD.lift(other)
        return AD(self.x * other.x, self.dx * other.x + self.x * other.dx)

    def __truediv__(self, other):
        other = AD.lift(other)
        return AD(self.x / other.x, (self.dx * other.x - self.x * other.dx) / other.x ** 2)

    def __pow__(self, power):
        """Constant exponents only: d(u**p) = p * u**(p-1) * du."""
        if isinstance(power, AD):
            raise TypeError("AD ** AD is not supported, only AD ** number")
        return AD(self.x ** power, power * self.x ** (power - 1) * self.dx)

    def __neg__(self):
        return AD(-self.x, -self.dx)

    def __radd__(self, other):
        return AD.lift(other) + self

    def __rsub__(self, other):
        return AD.lift(other) - self

    def __rmul__(self, other):
        return AD.lift(other) * self

    def __rtruediv__(self, other):
        return AD.lift(other) / self

    def __repr__(self):
        return f"AD({self.x!r}, {self.dx!r})"


class PartialSum:
    """Terms first <= i < last of the Taylor series of ln(1 + x)."""

    def __init__(self, first, last):
        self.first = first
        self.last = last

    def t_log(self, x):
        total = 0
        for i in range(self.first, self.last):
            total = total + (-1) ** i * x ** (i + 1) / (i + 1)
        return total


def check_ad():
    """AD on its own, on the master: f(x) = (3x**2 - 1/x) / (x + 2) - x, f'(x) by hand."""
    x = 1.5
    f = (3 * AD(x) ** 2 - 1 / AD(x)) / (AD(x) + 2) - AD(x)
    num, den = 3 * x ** 2 - 1 / x, x + 2
    df = ((6 * x + 1 / x ** 2) * den - num) / den ** 2 - 1
    if abs(f.x - (num / den - x)) > 1e-12 or abs(f.dx - df) > 1e-12:
        sys.exit(f"FAILED: AD gives {f!r}, expected AD({num / den - x!r}, {df!r})")


def submit_point(server, x):
    """RANGES jobs for one x: each a bound method t_log of its own PartialSum, on AD(x)."""
    bounds = [TERMS * i // RANGES for i in range(RANGES + 1)]
    parts = [PartialSum(first, last) for first, last in zip(bounds, bounds[1:])]
    return [server.submit(part.t_log, (AD(x),)) for part in parts]


def check_point(x, jobs):
    """Adds up the partial sums of one x and compares them with ln(1 + x) and 1/(1 + x)."""
    total = sum((job() for job in jobs), AD(0.0, 0.0))
    if not isinstance(total, AD):
        sys.exit(f"FAILED: x = {x}: the jobs returned {type(total).__name__}, not AD")
    print(f"t_log({x}) = {total.x:.15f} (ln(1+x) = {math.log1p(x):.15f}), "
          f"t_log'({x}) = {total.dx:.15f} (1/(1+x) = {1 / (1 + x):.15f})")
    if abs(total.x - math.log1p(x)) > 1e-12 or abs(total.dx - 1 / (1 + x)) > 1e-12:
        sys.exit(f"FAILED: x = {x}: {total!r} is not (ln(1+x), 1/(1+x))")


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    check_ad()
    server = ppmpi.Server(ncpus)
    print("Starting ppmpi with", server.get_ncpus(), "workers")
    start = time.time()
    jobs = {x: submit_point(server, x) for x in POINTS}
    for x in POINTS:
        check_point(x, jobs[x])
    print("Time elapsed:", round(time.time() - start, 3), "s")
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
