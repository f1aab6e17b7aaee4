"""Nested jobs through the product: a parent fanning out no-op children (children/s, 1,000 at
once, get_executor()), and the cost of one level of recursion (a chain of DEPTH jobs, each
submitting the next and waiting for it; on Server(1) every level runs inline in its parent's
wait), against a top-level job's round trip in the same run.

    /usr/bin/python3 bench/nested.py [--rounds 3] [--children 1000] [--depth 100]
Needs PYTHONPATH=build/python (or an installed ppmpi), and scripts/mpi_env.sh as root."""
import argparse
import os
import statistics
import time

import ppmpi


def noop(x):
    return x


def fan_out(count):
    executor = ppmpi.get_executor()
    start = time.perf_counter()
    futures = [executor.submit(noop, i) for i in range(count)]
    assert sum(f.result() for f in futures) == sum(range(count))
    return time.perf_counter() - start


def chain(depth):
    if depth == 0:
        return 0
    return 1 + ppmpi.get_server().submit(chain, (depth - 1,))()


def timed_chain(depth):
    start = time.perf_counter()
    assert chain(depth) == depth
    return time.perf_counter() - start


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--children", type=int, default=1000)
    p.add_argument("--depth", type=int, default=100)
    args = p.parse_args()
    print(f"nproc={os.cpu_count()}")
    for ncpus in (1, 2):
        with ppmpi.Server(ncpus) as server:
            server.submit(noop, (0,))()
            rates, levels, trips = [], [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                for i in range(1000):
                    server.submit(noop, (i,))()
                trips.append((time.perf_counter() - start) / 1000)
                rates.append(args.children / server.submit(fan_out, (args.children,))())
                levels.append(server.submit(timed_chain, (args.depth,))() / args.depth)
            print(f"Server({ncpus}): {statistics.median(rates):,.0f} children/s "
                  f"({args.children} from one parent), {statistics.median(levels) * 1e6:.0f} us "
                  f"per level of a {args.depth}-deep chain; a top-level job's round trip "
                  f"{statistics.median(trips) * 1e6:.0f} us (medians of {args.rounds})")


if __name__ == "__main__":
    main()
