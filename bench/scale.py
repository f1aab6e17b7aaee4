"""Scale benchmark (issue 29): ppmpi against multiprocessing.Pool and mpi4py.futures from 16 to
512 workers on this machine, plus the simulated sweep of the master's cost to 10,000 workers.

    /usr/bin/python3 bench/scale.py                       # every size and peer (~30 min)
    /usr/bin/python3 bench/scale.py --sizes 16,128 --peers ppmpi-world,mp.Pool

Peers, each measured by bench/scale/run_one.py in a process (tree) of its own, one at a time,
the peers of one size back to back (this VM's speed moves from hour to hour):
  ppmpi-world     mpirun --oversubscribe --enable-recovery --bind-to none -np N+1: the world's
                  ranks 1..N are the workers (Server())
  ppmpi-spawned   Server(N) from a plain python3: N spawned workers
  mp.Pool         multiprocessing.Pool(N) (fork)
  mpi4py.futures  MPIPoolExecutor(max_workers=N) from a plain python3 (spawned workers)
The spawned peers run up to --spawned-up-to workers (each spawned rank's start-up is ~0.25 s
of CPU). Columns (run_one.py's docstring has the exact definitions): seconds until N jobs run
at once, idle CPU per worker, efficiency of N x R 100 ms sleep jobs (R = 10, 5 from 256 up;
the median of 3 batches), no-op jobs/s, the master's memory per worker, wrong results,
workers lost.
Writes bench/results/scale.json and scale.md; sources nothing: run it with the environment
of scripts/mpi_env.sh (bench/run.sh does that), or as a user would.
"""
import argparse
import json
import os
import platform
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
RUN_ONE = os.path.join(HERE, "scale", "run_one.py")
PEERS = ["mp.Pool", "ppmpi-world", "ppmpi-spawned", "mpi4py.futures"]
SPAWNED = {"ppmpi-spawned", "mpi4py.futures"}


def command(peer, n, args):
    rounds = 10 if n < 256 else 5
    tail = [str(n), "--sleep-rounds", str(rounds), "--noop-jobs", str(args.noop_jobs),
            "--idle", str(args.idle)]
    python = sys.executable
    if peer == "ppmpi-world":
        return ["mpirun", "--oversubscribe", "--enable-recovery", "--bind-to", "none",
                "-np", str(n + 1), python, RUN_ONE, "ppmpi"] + tail
    return [python, RUN_ONE, "ppmpi" if peer == "ppmpi-spawned" else peer] + tail


def measure(peer, n, args):
    """One run, bounded: on expiry its whole process group is killed and the row says so."""
    limit = args.limit_per_worker * n + 120
    t = time.monotonic()
    env = dict(os.environ)  # the build measured: its ppmpi first on the path
    built = os.path.join(args.build, "python")
    env["PYTHONPATH"] = built + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    proc = subprocess.Popen(command(peer, n, args), stdout=subprocess.PIPE, env=env,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        out, err = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return {"peer": peer, "n": n, "failed": f"did not end within {limit:.0f} s"}
    rows = [line for line in out.splitlines() if line.startswith("{")]
    if not rows:
        last = [line for line in err.splitlines() if "PMIX" not in line][-5:]
        return {"peer": peer, "n": n, "failed": f"exit {proc.returncode}: " + " | ".join(last)}
    row = json.loads(rows[-1])
    row["peer"], row["wall_s"] = peer, time.monotonic() - t
    return row


def simulated(args):
    binary = os.path.join(args.build, "bench", "sim_scale")
    out = os.path.join(args.out_dir, "scale-sim.json")
    proc = subprocess.run([binary, "--workers", args.sim_workers, "--json", out],
                          capture_output=True, text=True, timeout=1800)
    print(proc.stdout, flush=True)
    if proc.returncode != 0:
        return {"failed": proc.stderr[-500:]}
    with open(out) as f:
        return json.load(f)


def cell(row, key, fmt):
    value = row.get(key)
    return "—" if value is None else format(value, fmt)


def table(rows):
    lines = ["| N | peer | to full capacity, s | idle CPU per worker, % of a core | "
             "efficiency, 100 ms jobs | no-op jobs/s | master KiB per worker | wrong | lost |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        if "failed" in row:
            lines.append(f"| {row['n']} | {row['peer']} | failed: {row['failed']} |||||||")
            continue
        lines.append(" | ".join([
            f"| {row['n']}", row["peer"], cell(row, "capacity_s", ".1f"),
            cell(row, "idle_percent_per_worker", ".3f"), cell(row, "efficiency", ".2f"),
            cell(row, "noop_per_s", ",.0f"), cell(row, "master_kib_per_worker", ".0f"),
            cell(row, "errors", "d"), cell(row, "workers_lost", "d")]) + " |")
    return "\n".join(lines)


def parse():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="16,32,64,128,256,512")
    parser.add_argument("--peers", default=",".join(PEERS))
    parser.add_argument("--spawned-up-to", type=int, default=128)
    parser.add_argument("--noop-jobs", type=int, default=20000)
    parser.add_argument("--idle", type=float, default=5.0)
    parser.add_argument("--limit-per-worker", type=float, default=3.0,
                        help="a run's time limit: 120 s + this per worker")
    parser.add_argument("--sim-workers", default="10,100,1000,10000",
                        help="the simulated sweep's sizes ('' skips it)")
    parser.add_argument("--build", default=os.path.join(ROOT, "build"))
    parser.add_argument("--out-dir", default=os.path.join(HERE, "results"))
    args = parser.parse_args()
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.peers = args.peers.split(",")
    unknown = set(args.peers) - set(PEERS)
    if unknown:
        parser.error(f"unknown peers {sorted(unknown)}; known: {PEERS}")
    return args


def main():
    args = parse()
    os.makedirs(args.out_dir, exist_ok=True)
    rows = []
    for n in args.sizes:
        for peer in args.peers:
            if peer in SPAWNED and n > args.spawned_up_to:
                continue
            rows.append(measure(peer, n, args))
            print(json.dumps(rows[-1]), flush=True)
    sim = simulated(args) if args.sim_workers else None
    result = {"machine": {"nproc": os.cpu_count(), "python": platform.python_version(),
                          "date": time.strftime("%Y-%m-%d %H:%M")},
              "rows": rows, "simulated": sim}
    with open(os.path.join(args.out_dir, "scale.json"), "w") as f:
        json.dump(result, f, indent=1)
    text = table(rows)
    with open(os.path.join(args.out_dir, "scale.md"), "w") as f:
        f.write(f"nproc {os.cpu_count()}, {result['machine']['date']}\n\n{text}\n")
    print(text)


if __name__ == "__main__":
    main()
