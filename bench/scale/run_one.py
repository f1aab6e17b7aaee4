"""One measurement of bench/scale.py: one peer with N workers, in a process of its own.

    run_one.py PEER N [--idle S] [--noop-jobs M] [--sleep-rounds R] [--efficiency-repeats K]

PEER: ppmpi (a Server of N workers: the world's ranks under mpirun, else spawned),
mp.Pool (multiprocessing.Pool(N), fork), mpi4py.futures (MPIPoolExecutor(N), spawned).
Prints one JSON line:
  capacity_s     from creating the pool until N jobs run at once (a barrier job: each waits
                 until N have started)
  idle_percent   CPU of the master and every worker over --idle seconds with nothing to do
                 (% of one core), and idle_percent_per_worker
  efficiency     N x R jobs of 100 ms sleep: ideal wall (R x 0.1 s) / measured wall; the
                 median of --efficiency-repeats such batches (each in efficiency_runs), as
                 one batch at 512 lasts well under a second and swings with the machine
  noop_per_s     M no-op jobs submitted at once, then every result taken
  master_kib_per_worker  the master's VmRSS growth from before the pool until it is at full
                 capacity, per worker
  errors         wrong results (must be 0)
"""
import argparse
import json
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

PEER = sys.argv[1] if len(sys.argv) > 1 else ""
if PEER == "ppmpi":
    import ppmpi  # first: under mpirun, ranks 1..N become workers here

import jobs  # noqa: E402


def rss_kib(pid="self"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid):
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except OSError:
        return 0.0


class Ppmpi:
    def __init__(self, n):
        self.server = ppmpi.Server(n)

    def submit(self, func, *args):
        return self.server.submit(func, args)

    @staticmethod
    def result(handle):
        return handle()

    def close(self):
        self.server.destroy()


class MpPool:
    def __init__(self, n):
        import multiprocessing

        self.pool = multiprocessing.Pool(n)

    def submit(self, func, *args):
        return self.pool.apply_async(func, args)

    @staticmethod
    def result(handle):
        return handle.get()

    def close(self):
        self.pool.terminate()
        self.pool.join()


class Mpi4py:
    def __init__(self, n):
        from mpi4py.futures import MPIPoolExecutor

        self.executor = MPIPoolExecutor(max_workers=n, path=[HERE])

    def submit(self, func, *args):
        return self.executor.submit(func, *args)

    @staticmethod
    def result(handle):
        return handle.result()

    def close(self):
        self.executor.shutdown(wait=True)


PEERS = {"ppmpi": Ppmpi, "mp.Pool": MpPool, "mpi4py.futures": Mpi4py}


def capacity(peer, n, t0):
    """Seconds from t0 until n jobs ran at once, and the workers' pids."""
    with tempfile.TemporaryDirectory(prefix="ppmpi-scale-") as directory:
        handles = [peer.submit(jobs.gather, directory, n) for _ in range(n)]
        results = [peer.result(h) for h in handles]
    pids = {pid for pid, _ in results}
    return max(started for _, started in results) - t0, pids


def idle(pids, seconds):
    procs = [os.getpid()] + sorted(pids)
    before = {p: cpu_seconds(p) for p in procs}
    t = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t
    used = sum(cpu_seconds(p) - before[p] for p in procs)
    return 100.0 * used / wall


def efficiency(peer, n, rounds):
    count = n * rounds
    t = time.monotonic()
    handles = [peer.submit(jobs.sleep_job, 0.1) for _ in range(count)]
    done = [peer.result(h) for h in handles]
    wall = time.monotonic() - t
    return rounds * 0.1 / wall, sum(1 for pid in done if not isinstance(pid, int))


def noop_rate(peer, count):
    t = time.monotonic()
    handles = [peer.submit(jobs.noop, i) for i in range(count)]
    results = [peer.result(h) for h in handles]
    wall = time.monotonic() - t
    return count / wall, sum(1 for i, r in enumerate(results) if r != i)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("peer", choices=sorted(PEERS))
    parser.add_argument("n", type=int)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--noop-jobs", type=int, default=20000)
    parser.add_argument("--sleep-rounds", type=int, default=10)
    parser.add_argument("--efficiency-repeats", type=int, default=3)
    args = parser.parse_args()
    rss0 = rss_kib()
    t0 = time.monotonic()
    peer = PEERS[args.peer](args.n)
    cap, pids = capacity(peer, args.n, t0)
    out = {"peer": args.peer, "n": args.n, "capacity_s": cap, "workers_seen": len(pids),
           "master_kib_per_worker": (rss_kib() - rss0) / args.n}
    time.sleep(1.0)  # settle: start-up work done
    out["idle_percent"] = idle(pids, args.idle)
    out["idle_percent_per_worker"] = out["idle_percent"] / args.n
    runs = [efficiency(peer, args.n, args.sleep_rounds) for _ in range(args.efficiency_repeats)]
    out["efficiency_runs"] = [value for value, _ in runs]
    out["efficiency"] = statistics.median(out["efficiency_runs"])
    errors = sum(wrong for _, wrong in runs)
    out["noop_per_s"], noop_errors = noop_rate(peer, args.noop_jobs)
    out["errors"] = errors + noop_errors
    if args.peer == "ppmpi":
        stats = peer.server._pool.stats(60)
        out["workers_lost"] = stats["workers_lost"]
    peer.close()
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
