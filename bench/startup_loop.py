#!/usr/bin/env python3
"""Server start-up loop: how often does a ppmpi.Server(2) lifetime hang?

One lifetime = ``s = ppmpi.Server(2)``, one job per worker (``s.submit(os.getpid)`` twice,
results checked), ``s.destroy()``. Each lifetime runs in a thread of its own under a
watchdog: if it has not finished after --timeout seconds it is counted as hung, the process
prints what it has (and, with --gdb-dir, the stacks of itself and of the processes it
started), and ends with os._exit (a thread stuck inside MPI cannot be interrupted).

    /usr/bin/python3 bench/startup_loop.py --count 300                 # K lifetimes, one process
    mpirun --enable-recovery -np 1 /usr/bin/python3 bench/startup_loop.py --count 100
    /usr/bin/python3 bench/startup_loop.py --processes --count 40      # one process per lifetime

(with PYTHONPATH naming ppmpi's build, and scripts/mpi_env.sh sourced). The last line is
``lifetimes: N ok, H hung, E errors``; the exit status is 0 if every lifetime was ok, 3 if
one hung, 1 if any failed otherwise.

--processes: each lifetime is a separate driver process (this script with --count 1, in a
new session and process group), bounded by --timeout plus a margin for MPI's own start and
end; on timeout only that child's process group is killed (by the child's pid).
"""
import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

HUNG_STATUS = 3
CHILD_MARGIN_S = 30.0  # --processes: MPI_Init + finalize around the child's own watchdog


def percentile(values, q):
    if not values:
        return float("nan")
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, int(round(q * (len(ordered) - 1)))))
    return ordered[k]


def summary(name, values):
    if not values:
        return f"{name}: no samples"
    return (f"{name} (s, n={len(values)}): median {statistics.median(values):.3f}  "
            f"p90 {percentile(values, 0.9):.3f}  max {max(values):.3f}  min {min(values):.3f}")


def proc_children():
    """pid -> list of child pids, from /proc."""
    children = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue
        ppid = int(stat[stat.rindex(")") + 2:].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    return children


def descendants(root):
    children, out, todo = proc_children(), [], [root]
    while todo:
        pid = todo.pop()
        for child in children.get(pid, []):
            out.append(child)
            todo.append(child)
    return out


def describe(pid):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace").strip()
        with open(f"/proc/{pid}/stat") as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return f"{pid} (gone)"
    return f"{pid} [{state}] {cmd[:160]}"


def related_processes():
    """Processes of this run other than this one: our descendants (the singleton's orted and
    the workers it started) and, under mpirun, mpirun's other descendants (spawned workers
    are its children there) and mpirun itself."""
    me = os.getpid()
    pids = descendants(me)
    if "OMPI_COMM_WORLD_RANK" in os.environ:
        parent = os.getppid()
        pids = [parent] + [p for p in descendants(parent) if p != me and p not in pids] + pids
    return pids


def dump_stacks(directory, tag):
    """gdb backtraces of this process and its related processes into directory."""
    os.makedirs(directory, exist_ok=True)
    targets = [os.getpid()] + related_processes()
    for pid in targets:
        path = os.path.join(directory, f"{tag}-{pid}.txt")
        with open(path, "w") as out:
            out.write(describe(pid) + "\n")
            out.flush()
            try:
                subprocess.run(["gdb", "-p", str(pid), "-batch", "-ex", "thread apply all bt"],
                               stdout=out, stderr=subprocess.STDOUT, timeout=120)
            except (OSError, subprocess.TimeoutExpired) as exc:
                out.write(f"gdb failed: {exc}\n")
        print(f"  stacks of {describe(pid)} -> {path}", flush=True)


class Lifetime:
    """One Server(2) lifetime, its phase and times, run in a thread of its own."""

    def __init__(self, ppmpi, ncpus):
        self.ppmpi, self.ncpus = ppmpi, ncpus
        self.phase = "not started"
        self.times = {}
        self.error = None

    def run(self):
        try:
            self.phase = "Server()"
            t0 = time.monotonic()
            server = self.ppmpi.Server(self.ncpus)
            t1 = time.monotonic()
            self.times["create"] = t1 - t0
            self.phase = "jobs"
            jobs = [server.submit(os.getpid) for _ in range(self.ncpus)]
            results = [job() for job in jobs]
            t2 = time.monotonic()
            self.times["jobs"] = t2 - t1
            if not all(isinstance(r, int) and r > 0 and r != os.getpid() for r in results):
                raise AssertionError(f"bad results {results!r}")
            self.phase = "destroy()"
            server.destroy()
            self.times["destroy"] = time.monotonic() - t2
            self.phase = "done"
        except BaseException as exc:  # counted, the loop goes on
            self.error = f"{type(exc).__name__}: {exc}"
            self.phase += " (failed)"


def report(counts, times, started):
    for name in ("create", "jobs", "destroy"):
        print(summary("Server() creation" if name == "create" else name, times[name]))
    print(f"wall {time.monotonic() - started:.1f} s")
    print(f"lifetimes: {counts['ok']} ok, {counts['hung']} hung, {counts['errors']} errors",
          flush=True)


def run_in_process(args):
    import ppmpi

    counts = {"ok": 0, "hung": 0, "errors": 0}
    times = {"create": [], "jobs": [], "destroy": []}
    started = time.monotonic()
    under = "under mpirun" if "OMPI_COMM_WORLD_RANK" in os.environ else "alone"
    print(f"startup_loop: {args.count} lifetimes of Server({args.ncpus}) in pid {os.getpid()} "
          f"({under}), timeout {args.timeout} s", flush=True)
    for i in range(args.count):
        life = Lifetime(ppmpi, args.ncpus)
        thread = threading.Thread(target=life.run, name=f"lifetime-{i}", daemon=True)
        thread.start()
        thread.join(args.timeout)
        if thread.is_alive():
            counts["hung"] += 1
            print(f"HUNG: lifetime {i} (after {i} finished: {counts['ok']} ok, "
                  f"{counts['errors']} errors) stuck in {life.phase} for {args.timeout} s",
                  flush=True)
            for pid in related_processes():
                print(f"  related: {describe(pid)}", flush=True)
            if args.gdb_dir:
                dump_stacks(args.gdb_dir, f"hang{i}")
            if args.json:
                print("RESULT " + json.dumps({"status": "hung", "phase": life.phase,
                                              "times": life.times}), flush=True)
            report(counts, times, started)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(HUNG_STATUS)
        for name, value in life.times.items():
            times[name].append(value)
        if life.error is None:
            counts["ok"] += 1
        else:
            counts["errors"] += 1
            print(f"ERROR: lifetime {i} in {life.phase}: {life.error}", flush=True)
        if args.verbose:
            print(f"lifetime {i}: " + "  ".join(f"{k} {v:.3f}" for k, v in life.times.items()),
                  flush=True)
        elif (i + 1) % 50 == 0:
            print(f"... {i + 1} lifetimes", flush=True)
        if args.json:
            print("RESULT " + json.dumps({"status": "ok" if life.error is None else "error",
                                          "phase": life.phase, "error": life.error,
                                          "times": life.times}), flush=True)
    report(counts, times, started)
    return 0 if counts["ok"] == args.count else 1


def run_processes(args):
    counts = {"ok": 0, "hung": 0, "errors": 0}
    times = {"create": [], "jobs": [], "destroy": [], "process": []}
    started = time.monotonic()
    command = [sys.executable, os.path.abspath(__file__), "--count", "1", "--json",
               "--timeout", str(args.timeout), "--ncpus", str(args.ncpus)]
    if args.gdb_dir:
        command += ["--gdb-dir", args.gdb_dir]
    limit = args.timeout + CHILD_MARGIN_S + (600 if args.gdb_dir else 0)
    print(f"startup_loop: {args.count} driver processes, each one lifetime of "
          f"Server({args.ncpus}), timeout {args.timeout} s (+{limit - args.timeout:.0f} s "
          f"for the process)", flush=True)
    for i in range(args.count):
        t0 = time.monotonic()
        child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 start_new_session=True, text=True)
        try:
            output, _ = child.communicate(timeout=limit)
            killed = False
        except subprocess.TimeoutExpired:
            killed = True
            try:
                os.killpg(child.pid, signal.SIGKILL)  # the group this child leads, by its pid
            except ProcessLookupError:
                pass
            output, _ = child.communicate()
        elapsed = time.monotonic() - t0
        result = None
        for line in output.splitlines():
            if line.startswith("RESULT "):
                result = json.loads(line[len("RESULT "):])
        if result is not None:
            for name, value in result["times"].items():
                times[name].append(value)
        if killed or (result is not None and result["status"] == "hung"):
            counts["hung"] += 1
            how = "killed" if killed else f"stuck in {result['phase']}"
            print(f"HUNG: process {i} (pid {child.pid}) {how}", flush=True)
            print("  " + "\n  ".join(l for l in output.splitlines()
                                     if not l.startswith("RESULT ")), flush=True)
        elif child.returncode == 0 and result is not None and result["status"] == "ok":
            counts["ok"] += 1
            times["process"].append(elapsed)
        else:
            counts["errors"] += 1
            print(f"ERROR: process {i} (pid {child.pid}) exit {child.returncode}:\n  "
                  + "\n  ".join(output.splitlines()[-15:]), flush=True)
        if args.verbose:
            print(f"process {i}: exit {child.returncode} wall {elapsed:.3f} " +
                  ("  ".join(f"{k} {v:.3f}" for k, v in result["times"].items())
                   if result else ""), flush=True)
        elif (i + 1) % 10 == 0:
            print(f"... {i + 1} processes", flush=True)
    print(summary("process wall (ok ones)", times.pop("process")))
    report(counts, times, started)
    return 0 if counts["ok"] == args.count else (HUNG_STATUS if counts["hung"] else 1)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=100, help="lifetimes (default 100)")
    parser.add_argument("--timeout", type=float, default=30.0,
                        help="seconds one lifetime may take before it counts as hung (30)")
    parser.add_argument("--ncpus", type=int, default=2, help="workers per Server (2)")
    parser.add_argument("--processes", action="store_true",
                        help="each lifetime in a separate driver process")
    parser.add_argument("--gdb-dir", help="on a hang, write gdb stacks of this process and "
                        "the processes it started into this directory")
    parser.add_argument("--verbose", "-v", action="store_true", help="one line per lifetime")
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.processes:
        if "OMPI_COMM_WORLD_RANK" in os.environ:
            parser.error("--processes starts its own drivers; run it alone, not under mpirun")
        return run_processes(args)
    return run_in_process(args)


if __name__ == "__main__":
    sys.exit(main())
