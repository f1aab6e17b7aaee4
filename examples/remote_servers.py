#!/usr/bin/python3
"""The seed's remote example on ppmpi: jobs submitted from a ThreadPoolExecutor to remote
ppmpi-servers (pp's ppserver), results consumed with as_completed.

    # on each server host:  ppmpi-server -p 35000 -i <ip> -s "mys" -d
    python3 examples/remote_servers.py --secret mys host1:35000 host2:35000 [--ncpus N]
    python3 examples/remote_servers.py          # starts its own ppmpi-server on 127.0.0.1

With no address it starts one ppmpi-server on 127.0.0.1 (a random port and secret) for the
demo and stops it at the end. --ncpus 0 runs every job on the servers.
"""
import ppmpi as pp  # first: under mpirun, worker ranks are taken over here

import argparse
import os
import pathlib
import secrets
import signal
import socket
import subprocess
import sys
import threading
from concurrent.futures import ThreadPoolExecutor, as_completed


def sum_primes(n):
    """Sum of the primes below n (self-contained: it travels to any server)."""
    import math

    def isprime(k):
        return k >= 2 and all(k % i for i in range(2, int(math.isqrt(k)) + 1))
    return sum(x for x in range(2, n) if isprime(x))


def start_local_server(secret):
    """A ppmpi-server on 127.0.0.1 for the demo: (process, "127.0.0.1:port")."""
    binary = pathlib.Path(pp.__file__).resolve().parents[2] / "bin" / "ppmpi-server"
    if not binary.exists():  # installed: next to ppmpirun on PATH
        binary = "ppmpi-server"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, str(binary), "-i", "127.0.0.1", "-p", str(port),
                             "-s", secret, "-w", "1"], stderr=subprocess.PIPE, text=True)
    # Bounded: a server that neither listens nor exits within 60 s is killed, which ends
    # this read loop (its stderr closes).
    watchdog = threading.Timer(60.0, proc.kill)
    watchdog.start()
    try:
        for line in proc.stderr:
            if "listening on" in line:
                return proc, f"127.0.0.1:{port}"
    finally:
        watchdog.cancel()
    sys.exit(f"FAILED: ppmpi-server did not start within 60 s (exit {proc.wait()})")


def run(servers, secret, ncpus):
    job_server = pp.Server(ncpus, ppservers=tuple(servers), secret=secret)
    print("Starting ppmpi with", job_server.get_ncpus(), "local workers and servers",
          ", ".join(servers))

    def one(n):
        job = job_server.submit(sum_primes, (n,))
        return n, job()

    inputs = list(range(100000, 100700, 10))
    with ThreadPoolExecutor(max_workers=8) as executor:
        futures = [executor.submit(one, n) for n in inputs]
        results = dict(f.result() for f in as_completed(futures))
    print("Sum of primes below 100, 100000 and 100690:", sum_primes(100), results[100000],
          results[100690])
    print("Active nodes:", job_server.get_active_nodes())
    job_server.print_stats()
    job_server.destroy()
    return results, inputs


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("servers", nargs="*", help="host:port of each ppmpi-server")
    p.add_argument("--secret", help="the servers' -s secret")
    p.add_argument("--ncpus", type=int, default=None, help="local workers (default: all CPUs)")
    args = p.parse_args()
    own, servers, secret = None, args.servers, args.secret
    if not servers:
        secret = secrets.token_hex(16)
        own, address = start_local_server(secret)
        servers = [address]
    try:
        results, inputs = run(servers, secret,
                              "autodetect" if args.ncpus is None else args.ncpus)
    finally:
        if own is not None:
            own.send_signal(signal.SIGTERM)
            own.wait(30)
    wrong = [n for n in inputs[::10] if results[n] != sum_primes(n)]
    if wrong or len(results) != len(inputs):
        sys.exit(f"FAILED: wrong sums for {wrong}")
    print("OK: all results checked")
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
