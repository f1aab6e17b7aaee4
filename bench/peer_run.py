"""Runs one workload on one peer with W workers and writes its numbers as JSON to --out.

    /usr/bin/python3 bench/peer_run.py --peer ppmpi --workload noop --workers 1 \
        --params '{"n": 100000}' --out /tmp/x.json

One process per (peer, workload, W), started by run.py with a time limit: a peer that hangs
costs one measurement, and each measurement starts from a fresh master (clean RSS, no MPI
left over from another peer). The __main__ guard matters: multiprocessing and mpi4py re-import
this file in their workers."""
import argparse
import collections
import json
import statistics
import time

import peers
import workloads


def rss_mib():
    """The master's resident set now (VmRSS), in MiB."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def noop(peer, n):
    """Workload 1: submit n tiny jobs, then take every result."""
    t0 = time.perf_counter()
    handles = [peer.submit(workloads.noop, i) for i in range(n)]
    t1 = time.perf_counter()
    total = sum(peer.result(h) for h in handles)
    t2 = time.perf_counter()
    assert total == n * (n - 1) // 2, "wrong results"
    return {"n": n, "tasks_per_s": n / (t2 - t0), "submit_s": t1 - t0, "total_s": t2 - t0}


def roundtrip(peer, n):
    """Workload 2: submit one job, wait for its result, repeat; per-trip times in µs."""
    trips = []
    for i in range(n):
        t0 = time.perf_counter_ns()
        assert peer.result(peer.submit(workloads.noop, i)) == i
        trips.append((time.perf_counter_ns() - t0) / 1000)
    trips.sort()
    return {"n": n, "median_us": statistics.median(trips), "mean_us": statistics.fmean(trips),
            "p10_us": trips[n // 10], "p90_us": trips[n * 9 // 10]}


def payload(peer, mib, reps):
    """Workload 3: a float64 array of `mib` MiB goes to the worker and comes back (echo).
    Bandwidth each way = bytes / (round trip / 2): the ping-pong floor's own definition."""
    import numpy as np

    arr = np.arange(mib * 1024 * 1024 // 8, dtype=np.float64)
    trips = []
    for _ in range(reps + 1):  # the first trip warms up buffers and the worker; not counted
        t0 = time.perf_counter()
        out = peer.result(peer.submit(workloads.echo, arr))
        trips.append(time.perf_counter() - t0)
        assert out.shape == arr.shape and out[-1] == arr[-1], "payload came back wrong"
        del out
    best, med = min(trips[1:]), statistics.median(trips[1:])
    return {"bytes": arr.nbytes, "reps": reps, "median_rtt_s": med, "best_rtt_s": best,
            "gib_s_each_way": arr.nbytes / (med / 2) / 2**30,
            "best_gib_s_each_way": arr.nbytes / (best / 2) / 2**30}


def cpu(peer, workers, spin_n, reps):
    """Workload 4: W*4 calls of spin(spin_n) (~0.2 s each) on W workers. The serial time is
    the same calls run here in the master, alternating with the parallel runs so that both
    see the same load from the rest of the machine; best of reps for each.
    Each job also reports its own CPU time, which splits the speedup in two factors:
    speedup = W x busy x (serial job time / parallel job time), where busy = job CPU time /
    (W x wall) is how much of the workers' time went into jobs (what the server loses) and the
    last factor is how fast the same job ran in parallel against alone (what the machine
    gives: on the 2-vCPU test VM each vCPU's speed swings by up to 2x on its own)."""
    jobs = workers * 4
    serial, walls, serial_cpu, parallel_cpu = [], [], [], []
    for _ in range(reps):
        t0 = time.perf_counter()
        serial_cpu.append(sum(workloads.timed_spin(spin_n) for _ in range(jobs)))
        serial.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        handles = [peer.submit(workloads.timed_spin, spin_n) for _ in range(jobs)]
        parallel_cpu.append(sum(peer.result(h) for h in handles))
        walls.append(time.perf_counter() - t0)
    best = walls.index(min(walls))
    busy = [cpu / (workers * wall) for cpu, wall in zip(parallel_cpu, walls)]
    return {"jobs": jobs, "spin_n": spin_n, "walls_s": walls, "wall_s": walls[best],
            "serials_s": serial, "serial_s": min(serial), "speedup": min(serial) / walls[best],
            "serial_job_cpu_s": serial_cpu, "parallel_job_cpu_s": parallel_cpu,
            "busy": busy, "busy_best_wall": busy[best],
            "job_speed_ratio": min(serial_cpu) / parallel_cpu[best]}


def function_bytes(peer, n):
    """Workload 5: the same function n times; function bytes sent, from ppmpi's counters
    (a function not used before in this process, so every byte counted is this workload's)."""
    before = peer.function_stats() if hasattr(peer, "function_stats") else None
    handles = [peer.submit(workloads.square, i) for i in range(n)]
    assert sum(peer.result(h) for h in handles) == sum(i * i for i in range(n))
    if before is None:
        return {"n": n, "function_bytes_sent": peers.reference_bytes(workloads.square, n),
                "function_defs_sent": n, "estimated": True}
    after = peer.function_stats()
    out = {k: after[k] - before[k] for k in after}
    return dict(out, n=n, estimated=False)


def growth(peer, checkpoints, window, budget_s):
    """Workload 6: one stream of jobs, results taken as they come (at most `window` in
    flight; the oldest is taken when the window is full), with per-job time and master RSS
    at each checkpoint (10^3 ... 10^6 jobs taken). Stops early, saying so, past budget_s."""
    inflight, rows = collections.deque(), []
    t_start = t_last = time.perf_counter()
    done = last = 0
    rss_start = rss_mib()
    for i in range(checkpoints[-1]):
        if len(inflight) == window:
            done += peer.result(inflight.popleft()) is not None
        inflight.append(peer.submit(workloads.noop, i))
        if i % 1000 == 0 and time.perf_counter() - t_start > budget_s:
            break
        if i + 1 in checkpoints:  # drain, so the row counts exactly i+1 jobs taken
            while inflight:
                done += peer.result(inflight.popleft()) is not None
            now = time.perf_counter()
            rows.append({"jobs": done, "per_job_us": (now - t_last) / (done - last) * 1e6,
                         "rss_mib": rss_mib()})
            t_last, last = now, done
    while inflight:
        peer.result(inflight.popleft())
    return {"window": window, "rss_start_mib": rss_start, "rows": rows,
            "stopped_early": len(rows) < len(checkpoints),
            "elapsed_s": time.perf_counter() - t_start}


WORKLOADS = {"noop": noop, "roundtrip": roundtrip, "payload": payload, "cpu": cpu,
             "function_bytes": function_bytes, "growth": growth}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peer", choices=sorted(peers.PEERS), required=True)
    ap.add_argument("--workload", choices=sorted(WORKLOADS), required=True)
    ap.add_argument("--workers", type=int, required=True)
    ap.add_argument("--params", default="{}", help="JSON keyword arguments of the workload")
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    params = json.loads(args.params)
    if args.workload == "cpu":
        params["workers"] = args.workers
    t0 = time.perf_counter()
    peer = peers.PEERS[args.peer](args.workers)
    # Start-up includes the first job: mpi4py and ProcessPoolExecutor start workers lazily.
    assert peer.result(peer.submit(workloads.noop, 7)) == 7
    startup = time.perf_counter() - t0
    result = WORKLOADS[args.workload](peer, **params)
    peer.close()
    result.update(peer=peer.name, workers=args.workers, startup_s=startup)
    with open(args.out, "w") as out:
        json.dump(result, out)


if __name__ == "__main__":
    main()
