"""ppmpi-server measured through the product: Server(0, ppservers=...) against a ppmpi-server
on 127.0.0.1, next to local Servers in the same run (what docs/remote-servers.md quotes).

    /usr/bin/python3 bench/remote/product.py [--cycles 200] [--workers 1] [--rounds 2]

1. attach/detach: `Server(0, ppservers=(server,))` + one job + destroy(), `--cycles` times,
   each bounded (a cycle over 30 s counts as a hang and ends the run);
2. `--rounds` times, interleaved: Server(1) against Server(0, ppservers) (no-op round trip,
   median of 1000 with one job in flight; a 64 MiB numpy array echoed, median of 5, checked,
   bandwidth each way = bytes / (rtt / 2); 5000 no-op jobs submitted at once: jobs/s) and
   Server(2) against Server(2, ppservers) (jobs/s); the medians over the rounds and their
   ratios, next to issue 30's targets (>= 0.5x, <= 3x, >= 0.3x, >= 0.9x).
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


def measure(server, full):
    """{"rtt", "echo", "rate"} of one Server (only "rate" unless full)."""
    out = {"rate": bounded(lambda: throughput(server), "throughput")}
    if full:
        out["rtt"] = bounded(lambda: round_trips(server), "round trips")
        out["echo"] = bounded(lambda: echo_64mib(server), "64 MiB echo")
    return out


def compare(address, rounds):
    """The four Servers, `rounds` times interleaved; medians of each measure."""
    configs = {"Server(1)": (1, (), True), "Server(0, ppservers)": (0, (address,), True),
               "Server(2)": (2, (), False), "Server(2, ppservers)": (2, (address,), False)}
    seen = {name: [] for name in configs}
    for _ in range(rounds):
        for name, (ncpus, servers, full) in configs.items():
            with ppmpi.Server(ncpus, ppservers=servers, secret="bench") as server:
                server.submit(noop, (0,))()
                seen[name].append(measure(server, full))
    return {name: {key: statistics.median(r[key] for r in runs) for key in runs[0]}
            for name, runs in seen.items()}


def report(m):
    gib = 64 / 1024
    for name, values in m.items():
        parts = [f"{values['rate']:.0f} jobs/s"]
        if "rtt" in values:
            parts += [f"round trip {values['rtt'] * 1e6:.0f} us",
                      f"64 MiB echo {gib / (values['echo'] / 2):.2f} GiB/s each way"]
        print(f"{name:22s}: " + ", ".join(parts))
    local, remote = m["Server(1)"], m["Server(0, ppservers)"]
    print(f"Server(0, ppservers) / Server(1): no-op rate {remote['rate'] / local['rate']:.2f}x "
          f"(target >= 0.5x), round trip {remote['rtt'] / local['rtt']:.2f}x (<= 3x), "
          f"64 MiB echo {local['echo'] / remote['echo']:.2f}x (>= 0.3x)")
    both = m["Server(2, ppservers)"]["rate"] / m["Server(2)"]["rate"]
    print(f"Server(2, ppservers) / Server(2): no-op rate {both:.2f}x (target >= 0.9x)")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--cycles", type=int, default=200)
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--rounds", type=int, default=2)
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
        report(compare(address, args.rounds))
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
