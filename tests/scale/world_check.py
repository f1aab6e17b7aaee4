"""Runs tests/scale/world_driver.py CASE under mpirun with N world-rank workers, as a user on a
machine smaller than the job would (--oversubscribe, no binding), and passes if the driver
printed `SCALE-OK CASE` and nothing failed. With --enable-recovery mpirun exits 0 whatever the
ranks did, so the output is what is checked.

    world_check.py N CASE LIMIT_S

Bounded: after LIMIT_S the whole run (mpirun's process group, which this started) is killed
and the test fails. Prints the driver's summary lines.
"""
import os
import signal
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))


def main():
    n, case, limit = int(sys.argv[1]), sys.argv[2], float(sys.argv[3])
    command = ["mpirun", "--oversubscribe", "--enable-recovery", "--bind-to", "none",
               "-np", str(n + 1), sys.executable, os.path.join(HERE, "world_driver.py"), case]
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=limit)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        print(tail(out))
        print(f"FAIL: {n} ranks, {case}: did not end within {limit:.0f} s")
        return 1
    lines = out.splitlines()
    if f"SCALE-OK {case}" not in lines or any("SCALE-FAILED" in line for line in lines):
        print(tail(out))
        print(f"FAIL: {n} ranks, {case} (mpirun exit {proc.returncode})")
        return 1
    for line in lines:
        if not line.startswith(("[", "--")) and "PMIX" not in line:
            print("   ", line)
    print(f"ok: {n} ranks, {case}")
    return 0


def tail(out, count=60):
    """The run's last lines, without Open MPI's PMIx noise (one line per rank at exit)."""
    lines = [line for line in out.splitlines() if "PMIX ERROR" not in line]
    return "\n".join("    | " + line for line in lines[-count:])


if __name__ == "__main__":
    sys.exit(main())
