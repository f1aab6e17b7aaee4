"""ppmpi-server measured through the product: Server(0, ppservers=...) against a ppmpi-server
on 127.0.0.1 (what README "Remote servers" quotes).

    /usr/bin/python3 bench/remote/product.py [--cycles 200] [--workers 1]

1. attach/detach: `Server(0, ppservers=(server,))` + one job + destroy(), `--cycles` times,
   each bounded (a cycle over 30 s counts as a hang and ends the run);
2. round trip of a no-op job, median of 1000 (one job in flight), next to a local Server(1);
3. a 64 MiB numpy array echoed, median of 5, checked; bandwidth each way = bytes / (rtt / 2);
4. 5000 no-op jobs submitted at once: jobs/s through the server.
Needs PYTHONPATH=build/python (or an installed ppmpi) and scripts/mpi_env.sh as root."""
import argparse
import os
import pathlib
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time

import numpy as np
import ppmpi

BUILD = pathlib.Path(ppmpi.__file__).resolve().parents[2]
HANG_S = 30.0


def noop(x):
    return x


def start_server(port, workers):
    argv = [sys.executable, str(BUILD / "bin" / "ppmpi-server"), "-i", "127.0.0.1",
            "-p", str(port), "-s", "bench", "-w", str(workers)]
    proc = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True)
    watchdog = threading.Timer(HANG_S, proc.kill)  # ends the read loop if it never listens
    watchdog.start()
    try:
        for line in proc.stderr:  # "listening on ..." once its workers are up
            if "listening on" in line:
                threading.Thread(target=proc.stderr.read, daemon=True).start()
                return proc
    finally:
        watchdog.cancel()
    raise SystemExit(f"HANG: ppmpi-server did not listen within {HANG_S} s "
                     f"(exit {proc.wait()})")


def bounded(fn, what):
    """fn() in a thread; a run past HANG_S is reported as a hang (the process then exits)."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()), daemon=True)
    thread.start()
    thread.join(HANG_S)
    if thread.is_alive():
        print(f"HANG: {what} did not finish within {HANG_S} s")
        os._exit(1)
    return out.get("value")


def attach_cycles(address, cycles):
    times = []
    for i in range(cycles):
        def one():
            t0 = time.perf_counter()
            with ppmpi.Server(0, ppservers=(address,), secret="bench") as s:
                assert s.submit(noop, (i,))() == i
            return time.perf_counter() - t0
        times.append(bounded(one, f"attach/detach cycle {i}"))
    return times


def round_trips(server, count=1000):
    times = []
    for i in range(count):
        t0 = time.perf_counter()
        server.submit(noop, (i,))()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def echo_64mib(server):
    data = np.random.default_rng(1).integers(0, 255, 64 << 20, dtype=np.uint8)
    times = []
    for _ in range(5):
        t0 = time.perf_counter()
        back = server.submit(noop, (data,))()
        times.append(time.perf_counter() - t0)
        assert np.array_equal(back, data)
    return statistics.median(times)


def throughput(server, count=5000):
    t0 = time.perf_counter()
    jobs = [server.submit(noop, (i,)) for i in range(count)]
    assert [j() for j in jobs] == list(range(count))
    return count / (time.perf_counter() - t0)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--workers", type=int, default=1)
    args = p.parse_args()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = start_server(port, args.workers)
    address = f"127.0.0.1:{port}"
    try:
        print(f"nproc={os.cpu_count()} server workers={args.workers}")
        cycles = attach_cycles(address, args.cycles)
        print(f"attach/detach: {len(cycles)}/{args.cycles} cycles, 0 hangs, median "
              f"{statistics.median(cycles) * 1e3:.2f} ms, worst {max(cycles) * 1e3:.1f} ms")
        with ppmpi.Server(0, ppservers=(address,), secret="bench") as remote:
            rtt = bounded(lambda: round_trips(remote), "round trips")
            big = bounded(lambda: echo_64mib(remote), "64 MiB echo")
            rate = bounded(lambda: throughput(remote), "throughput")
        print(f"remote no-op round trip: median {rtt * 1e6:.0f} us")
        print(f"remote 64 MiB echo: median {big * 1e3:.1f} ms -> "
              f"{(64 / 1024) / (big / 2):.2f} GiB/s each way")
        print(f"remote no-op throughput: {rate:.0f} jobs/s")
        with ppmpi.Server(1) as local:
            print(f"local Server(1) no-op round trip: median {round_trips(local) * 1e6:.0f} us")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
