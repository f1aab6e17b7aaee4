"""Throughput by job size: ppmpi and multiprocessing.Pool running many pure-Python jobs of one
size on W workers (default 2), for several sizes (default 0.5, 2, 20 and 100 ms).

For each: the wall time of N jobs, how busy the workers were (CPU time inside the jobs over
W × wall) and the speedup over serial: N × the time per job of ~1 s of the same jobs run here,
right before (the VM's speed drifts). Short-to-medium jobs are where a task runner's per-job round trip and idle polling
show: a worker waiting for its next job, or a core taken by the master's polling.

    scripts/build.sh && source scripts/mpi_env.sh &&
    PYTHONPATH=build/python:bench /usr/bin/python3 bench/job_sizes.py [--workers 2] [--ms 0.5 2]
"""
import argparse
import multiprocessing
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import workloads  # noqa: E402  (after the path it is found on)

TOTAL_SERIAL_S = 4.0  # serial seconds of work per size: N = TOTAL_SERIAL_S / job time
SAMPLE_S = 1.0  # serial seconds sampled before each run, for its speedup


def serial_per_job(n, seconds):
    count = max(1, int(SAMPLE_S / seconds))
    return sum(workloads.timed_spin(n) for _ in range(count)) / count


def run_ppmpi(workers, n, count):
    import ppmpi

    with ppmpi.Server(workers) as server:
        server.submit(workloads.timed_spin, (10,))()  # started, function shipped
        t0 = time.perf_counter()
        jobs = [server.submit(workloads.timed_spin, (n,)) for _ in range(count)]
        inside = sum(job() for job in jobs)
        return time.perf_counter() - t0, inside


def run_pool(workers, n, count):
    with multiprocessing.Pool(workers) as pool:
        pool.apply_async(workloads.timed_spin, (10,)).get()
        t0 = time.perf_counter()
        handles = [pool.apply_async(workloads.timed_spin, (n,)) for _ in range(count)]
        inside = sum(h.get() for h in handles)
        return time.perf_counter() - t0, inside


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--ms", type=float, nargs="+", default=[0.5, 2.0, 20.0, 100.0])
    args = ap.parse_args()
    print(f"nproc = {os.cpu_count()}, {args.workers} workers")
    print("| job | peer | jobs | wall (s) | workers busy | speedup over serial |")
    print("|---|---|---|---|---|---|")
    for ms in args.ms:
        n, seconds = workloads.calibrate_spin(ms / 1000.0)
        count = max(args.workers * 4, int(TOTAL_SERIAL_S / seconds))
        for name, run in (("ppmpi", run_ppmpi), ("multiprocessing.Pool", run_pool)):
            serial = serial_per_job(n, seconds)
            wall, inside = run(args.workers, n, count)
            print(f"| {ms:g} ms | {name} | {count:,} | {wall:.2f} | "
                  f"{inside / (args.workers * wall):.0%} | {count * serial / wall:.2f} |",
                  flush=True)


if __name__ == "__main__":
    main()
