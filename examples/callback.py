#!/usr/bin/python3
"""pp's callback example on ppmpi: ln 2 from the alternating harmonic series, via callbacks.

1 - 1/2 + 1/3 - 1/4 + ... tends to ln 2. The terms are split into 128 partial-sum jobs, and
no job is ever called for its result: each result is handed to a callback on the master as
soon as it arrives, and server.wait() waits for all of them.

    python3 examples/callback.py [ncpus]          # workers spawned by the Server
    mpirun -np 3 python3 examples/callback.py     # ranks 1..2 are the workers
    ppmpirun -np 3 examples/callback.py           # rank 0 python3, ranks 1..2 ppmpi-worker
"""
import ppmpi  # first: under mpirun, worker ranks are taken over here

import math
import sys
import threading
import time

TERMS = 2_000_000  # the error of the sum after N terms is below 1/(N+1)
PARTS = 128


class Sum:
    """Accumulates the partial sums handed to the callbacks.

    pp runs the callbacks of different jobs in different threads, possibly at the same time
    (ppmpi runs them one at a time, on one thread), so the total is only updated under a
    lock: this code is right under both."""

    def __init__(self):
        self.value = 0.0
        self.count = 0
        self.parts = {}
        self.lock = threading.Lock()

    def add(self, value):
        """callback=total.add: called as add(result)."""
        with self.lock:
            self.value += value
            self.count += 1

    def add_part(self, index, value):
        """callback=total.add_part, callbackargs=(index,): called as add_part(index, result)."""
        with self.lock:
            self.parts[index] = value
            self.count += 1


def part_sum(start, end):
    """Sum of the terms (-1)**(k+1) / k for start <= k < end."""
    total = 0.0
    for k in range(start, end):
        if k % 2 == 0:
            total -= 1.0 / k
        else:
            total += 1.0 / k
    return total


def ranges(first, end, parts):
    """parts consecutive [start, stop) ranges covering [first, end)."""
    step = (end - first) // parts + 1
    return [(first + i * step, min(first + (i + 1) * step, end)) for i in range(parts)]


def check(name, total, count):
    """Exits with an error unless total is ln 2 within the series' error and count is right."""
    error = abs(total - math.log(2))
    print(f"{name}: partial sum {total!r}, |ln 2 - sum| = {error:.3e}, {count} callbacks")
    if count != PARTS:
        sys.exit(f"FAILED: {name}: {count} callbacks ran, expected {PARTS}")
    # Alternating series: the error is at most the first term left out, 1/(TERMS + 1).
    if error > 1.0 / (TERMS + 1):
        sys.exit(f"FAILED: {name}: {total!r} is not ln 2 = {math.log(2)!r} within 1/{TERMS + 1}")


def run_plain(server):
    """callback=total.add: the results are added in whatever order they arrive."""
    total = Sum()
    for start, end in ranges(1, TERMS + 1, PARTS):
        server.submit(part_sum, (start, end), callback=total.add)
    server.wait()
    check("callback=Sum.add", total.value, total.count)
    return total.value


def run_indexed(server):
    """callbackargs=(index,): each result arrives with its index, so the parts can be summed
    in a fixed order (the same total on every run) and none can be missing or doubled."""
    total = Sum()
    for index, (start, end) in enumerate(ranges(1, TERMS + 1, PARTS)):
        server.submit(part_sum, (start, end), callback=total.add_part, callbackargs=(index,),
                      group="indexed")
    server.wait("indexed")
    if sorted(total.parts) != list(range(PARTS)):
        sys.exit(f"FAILED: callbackargs: parts {sorted(set(range(PARTS)) - set(total.parts))} "
                 "never arrived")
    value = math.fsum(total.parts[i] for i in range(PARTS))
    check("callback=Sum.add_part, callbackargs=(index,)", value, total.count)
    return value


def main():
    ncpus = int(sys.argv[1]) if len(sys.argv) > 1 else "autodetect"
    server = ppmpi.Server(ncpus)
    print("Starting ppmpi with", server.get_ncpus(), "workers")
    start = time.time()
    plain = run_plain(server)
    indexed = run_indexed(server)
    print("Time elapsed:", round(time.time() - start, 3), "s")
    # Same terms, different order of addition: they may differ only by rounding.
    if abs(plain - indexed) > 1e-12:
        sys.exit(f"FAILED: the two runs disagree: {plain!r} vs {indexed!r}")
    server.print_stats()
    server.destroy()
    # The tests look for this line: under mpirun --enable-recovery the exit status is lost.
    print("OK: all results checked")


if __name__ == "__main__":
    main()
