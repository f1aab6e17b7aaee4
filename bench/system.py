"""The machine under the benchmark: what it is (recorded with every result), bounded
subprocesses, the MPI ping-pong floor (bench/pingpong.c) and the core-to-core cache-line
round trip (bench/core_to_core.c)."""
import json
import os
import platform
import signal
import subprocess
import sys
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
BUILD = os.path.join(ROOT, "build", "bench")  # build output stays out of git (build*/ ignored)

# Three floors: "world" is the headline (plain `mpirun -np 2`, shared memory); "tcp" forces the
# same world onto TCP loopback; "spawn" is a singleton that MPI_Comm_spawns its partner, the
# path ppmpi's workers take in launch mode 1 (TCP: shared memory is unreachable for spawns here).
FLOORS = {
    "world": ["mpirun", "-np", "2", "{exe}", "world"],
    "tcp": ["mpirun", "-np", "2", "--mca", "btl", "tcp,self", "{exe}", "tcp"],
    "spawn": ["{exe}", "spawn"],
}


def run_limited(cmd, timeout, env=None, cwd=None):
    """Runs cmd in its own process group and kills the whole group (spawned MPI processes
    included) if it outlives `timeout`: a peer that hangs costs one measurement, not the run.
    Returns (stdout, None) or (None, what went wrong)."""
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env, cwd=cwd)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, err = proc.communicate()
        return None, f"timed out after {timeout} s; stderr: {err[-500:]}"
    if proc.returncode != 0:
        return None, f"exit {proc.returncode}; stderr: {err[-1500:]}"
    return out, None


def _first_line(cmd):
    out, error = run_limited(cmd, 30)
    return out.strip().splitlines()[0] if out else f"unknown ({error})"


def describe():
    """nproc, versions and state of the machine, for results.json."""
    import mpi4py
    import numpy

    cpu = next((line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo")
                if line.startswith("model name")), "unknown")
    # The previous run's own results do not make the measured code uncommitted.
    dirty = bool(_first_line(["git", "-C", ROOT, "status", "--porcelain", "--", ".",
                              ":(exclude)bench/results"]).strip())
    return {
        "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "host": platform.node(),
        "nproc": os.cpu_count(), "cpu": cpu, "kernel": platform.release(),
        "open_mpi": _first_line(["mpirun", "--version"]),
        "python": sys.version.split()[0], "python_executable": sys.executable,
        "numpy": numpy.__version__, "mpi4py": mpi4py.__version__,
        "ppmpi_commit": _first_line(["git", "-C", ROOT, "rev-parse", "--short", "HEAD"]),
        "ppmpi_tree_dirty": dirty, "loadavg_start": open("/proc/loadavg").read().split()[:3],
    }


def build_pingpong():
    """Compiles pingpong.c with mpicc -O2 into build/bench/; returns the binary's path."""
    os.makedirs(BUILD, exist_ok=True)
    exe = os.path.join(BUILD, "pingpong")
    cmd = ["mpicc", "-O2", "-o", exe, os.path.join(BENCH, "pingpong.c")]
    out, error = run_limited(cmd, 120)
    if error is not None:
        raise RuntimeError(f"building the ping-pong failed: {error}")
    return exe


def core_to_core():
    """The cache-line round trip between the first two CPUs now (see core_to_core.c), built on
    first use; {"round_trip_ns": ..., "rounds_ns": [...]} or {"error": ...}."""
    exe = os.path.join(BUILD, "core_to_core")
    if not os.path.exists(exe):
        os.makedirs(BUILD, exist_ok=True)
        cmd = ["cc", "-O2", "-pthread", "-o", exe, os.path.join(BENCH, "core_to_core.c")]
        _, error = run_limited(cmd, 120)
        if error is not None:
            return {"error": f"building core_to_core failed: {error}"}
    out, error = run_limited([exe], 30)
    return {"error": error} if error is not None else json.loads(out.strip().splitlines()[-1])


def run_floors():
    """Each floor's numbers, keyed by floor name then message size in bytes (or an error: the
    peers still run without a floor)."""
    try:
        exe = build_pingpong()
    except RuntimeError as exc:
        return {name: {"error": str(exc)} for name in FLOORS}
    floors = {}
    for name, template in FLOORS.items():
        out, error = run_limited([a.replace("{exe}", exe) for a in template], 90)
        if error is not None:
            floors[name] = {"error": error}
            continue
        data = json.loads(out.strip().splitlines()[-1])
        floors[name] = {str(row["bytes"]): row for row in data["sizes"]}
    return floors
