"""Whole driver scripts run as `python3 driver.py` (launch mode 1): what only a real __main__
and a real interpreter exit can show. Run from the singleton session only."""
import os
import subprocess
import sys
import textwrap

import pytest
from conftest import launch_mode

pytestmark = pytest.mark.skipif(launch_mode() != "alone",
                                reason="starts its own singleton drivers")


def run_driver(tmp_path, source, timeout=120):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(source))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMIX_"))}
    return subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=tmp_path)


def test_main_functions_classes_and_bound_methods(tmp_path):
    proc = run_driver(tmp_path, """
        import ppmpi

        class Vec:
            def __init__(self, x, y):
                self.x, self.y = x, y
            def dot(self, other):
                return self.x * other.x + self.y * other.y

        def helper(v):
            return v * 10

        def uses_helper(v):
            return helper(v) + 1

        server = ppmpi.Server(2)
        a = Vec(1, 2)
        print("dot", server.submit(a.dot, (Vec(3, 4),))())
        print("helper", server.submit(uses_helper, (4,))())
        print("lambda", server.submit(lambda v: v.x + v.y, (Vec(5, 6),))())
        server.destroy()
    """)
    assert proc.returncode == 0, proc.stderr
    assert "dot 11" in proc.stdout and "helper 41" in proc.stdout and "lambda 11" in proc.stdout


def test_exit_with_a_daemon_thread_waiting_on_a_job(tmp_path):
    """Interpreter exit while another thread waits in C++ must not abort the process."""
    proc = run_driver(tmp_path, """
        import threading, time
        import ppmpi

        server = ppmpi.Server(1)
        job = server.submit(time.sleep, (30,))
        threading.Thread(target=job, daemon=True).start()
        server.submit(print, (1,), callback=lambda r: None)
        time.sleep(0.5)
        print("main done")
    """)
    assert proc.returncode == 0, proc.stderr
    assert "main done" in proc.stdout
    assert "terminate called" not in proc.stderr


def test_driver_exception_leaves_no_worker_running(tmp_path):
    proc = run_driver(tmp_path, """
        import os, ppmpi
        server = ppmpi.Server(2)
        pids = sorted({server.submit(os.getpid)() for _ in range(4)})
        print("pids", *pids)
        raise SystemExit("driver fails on purpose")
    """)
    assert proc.returncode == 1 and "driver fails on purpose" in proc.stderr
    pids = [int(p) for p in proc.stdout.split("pids", 1)[1].split()]
    import time
    deadline = time.time() + 15
    alive = pids
    while alive and time.time() < deadline:
        alive = [p for p in pids if os.path.exists(f"/proc/{p}")
                 and "Z" not in open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0]]
        time.sleep(0.1)
    assert not alive, f"workers still running after the driver ended: {alive}"
