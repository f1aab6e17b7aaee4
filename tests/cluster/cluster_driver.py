"""A pp driver run across simulated hosts (tests/cluster/cluster_check.sh) by mpirun --hostfile
or ppmpirun --hostfile. Each case checks its own results and ends with `CLUSTER-OK <case>`.

    cluster_driver.py CASE HOST...     HOST: the host names whose workers must serve

cases:
  basic     jobs on every host; print_stats() must show rows for workers on every host
  kill      a worker on the last host is SIGKILLed (by pid) mid-run: no job lost
  stop      a worker on the last host is SIGSTOPped mid-run: found by heartbeats, no job lost;
            the driver SIGKILLs the process it stopped before it ends
  hostloss  the last host's daemon and every rank on it are SIGKILLed mid-run: the driver
            goes on with the survivors and ends (never waits on the lost host)
  bandwidth 64 MiB numpy arrays echoed by a worker on the last host; prints GiB/s
"""
import ppmpi  # first: worker ranks are taken over here

import io
import os
import signal
import socket
import sys
import time
from contextlib import redirect_stdout


def square_where(x, seconds):
    import os
    import socket
    import time

    time.sleep(seconds)
    return x * x, socket.gethostname(), os.getpid(), os.getppid()


def echo(a):
    return a


def fail(message):
    print(f"CLUSTER-FAILED: {message}", flush=True)
    sys.exit(1)


def stats_hosts(server):
    out = io.StringIO()
    with redirect_stdout(out):
        server.print_stats()
    print(out.getvalue(), flush=True)
    return {row.rsplit(":", 1)[0] for row in server.get_stats()}


def workers_by_host(server, per_worker_jobs=6):
    """{host: {(pid, ppid)}} of the workers that ran a burst of short jobs."""
    jobs = [server.submit(square_where, (i, 0.05)) for i in range(per_worker_jobs * server.get_ncpus())]
    seen = {}
    for i, job in enumerate(jobs):
        value, host, pid, ppid = job()
        if value != i * i:
            fail(f"job {i} gave {value}")
        seen.setdefault(host, set()).add((pid, ppid))
    return seen


def run_with_fault(server, victims, sig, seconds=0.1):
    """Submits 48 jobs (4 per worker if more), sends `sig` to every pid in victims after the
    first results, and checks every result. Returns the hosts that ran jobs after the fault."""
    n_jobs = max(48, 4 * server.get_ncpus())
    jobs = [server.submit(square_where, (i, seconds)) for i in range(n_jobs)]
    after = set()
    for i, job in enumerate(jobs):
        if i == 4:
            for pid in victims:
                os.kill(pid, sig)
            print(f"sent signal {sig} to {sorted(victims)}", flush=True)
        value, host, pid, _ppid = job()
        if value != i * i:
            fail(f"job {i} gave {value}, wanted {i * i}")
        if i > 4 + server.get_ncpus() * 2:
            after.add(host)
            if pid in victims:
                fail(f"job {i} was answered by pid {pid}, which had been sent signal {sig}")
    return after


def main():
    case, hosts = sys.argv[1], sys.argv[2:]
    far = hosts[-1]
    server = ppmpi.Server(worker_timeout=2.0)
    print(f"{server.get_ncpus()} workers; master on {socket.gethostname()}", flush=True)
    seen = workers_by_host(server)
    if set(hosts) - set(seen):
        fail(f"no worker answered from {sorted(set(hosts) - set(seen))}; seen {sorted(seen)}")
    if case == "basic":
        shown = stats_hosts(server)
        if set(hosts) - shown:
            fail(f"print_stats shows no row for {sorted(set(hosts) - shown)}")
    elif case in ("kill", "stop"):
        victim = min(seen[far])[0]
        sig = signal.SIGKILL if case == "kill" else signal.SIGSTOP
        try:
            run_with_fault(server, {victim}, sig)
        finally:
            if case == "stop":
                os.kill(victim, signal.SIGKILL)  # the process this test stopped; nothing else
        lost = server._stats()["workers_lost"]
        print(f"workers lost: {lost}; workers now: {server.get_ncpus()}", flush=True)
        if lost < 1:
            fail("the faulty worker was never declared lost")
        stats_hosts(server)
    elif case == "hostloss":
        victims = {pid for pid, _ppid in seen[far]} | {ppid for _pid, ppid in seen[far]}
        after = run_with_fault(server, victims, signal.SIGKILL)
        if far in after:
            fail(f"{far} still ran jobs after it was lost")
        print(f"survivors ran the rest: {sorted(after)}; workers lost: "
              f"{server._stats()['workers_lost']} (the far host had {len(seen[far])})", flush=True)
        if set(hosts[:-1]) - after:
            fail(f"no job ran on {sorted(set(hosts[:-1]) - after)} after the fault")
        stats_hosts(server)
    elif case == "bandwidth":
        bandwidth(server, far)
    else:
        fail(f"unknown case {case}")
    t0 = time.monotonic()
    server.destroy()
    print(f"destroy took {time.monotonic() - t0:.2f} s", flush=True)
    print(f"CLUSTER-OK {case}", flush=True)


def bandwidth(server, far):
    import numpy as np

    a = np.arange(64 * 2**20 // 8, dtype=np.float64)
    best = None
    for _ in range(6):
        t0 = time.perf_counter()
        jobs = [server.submit(echo, (a,)) for _ in range(server.get_ncpus())]
        for job in jobs:
            b = job()
            if b.shape != a.shape or b[-1] != a[-1]:
                fail("echoed array differs")
        took = time.perf_counter() - t0
        best = took if best is None else min(best, took)
    moved = 2 * a.nbytes * server.get_ncpus()
    print(f"64 MiB echo to each of {server.get_ncpus()} workers (some on {far}): "
          f"{moved / best / 2**30:.2f} GiB/s through the master, best of 6", flush=True)


if __name__ == "__main__":
    main()
