"""Whole driver scripts run as `python3 driver.py` (launch mode 1): what only a real __main__
and a real interpreter exit can show. Run from the singleton session only."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import helpers
import pytest
from conftest import launch_mode

import ppmpi

pytestmark = pytest.mark.skipif(launch_mode() != "alone",
                                reason="starts its own singleton drivers")


def write_driver(tmp_path, source):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent(source))
    return str(script)


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMIX_"))}


def run_driver(tmp_path, source, timeout=120, **env):
    return subprocess.run([sys.executable, write_driver(tmp_path, source)], capture_output=True,
                          text=True, timeout=timeout, env=dict(clean_env(), **env), cwd=tmp_path)


def alive(pid):
    return not helpers.gone(pid)


def wait_all_gone(pids, timeout=20.0):
    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return [p for p in pids if alive(p)]


# A driver whose first line names its workers' pids, then blocks on long jobs.
BUSY_DRIVER = """
    import os, time
    import ppmpi
    server = ppmpi.Server(2)
    busy = lambda: (time.sleep(0.3), os.getpid())[1]
    print("pids", *sorted({j() for j in [server.submit(busy) for _ in range(2)]}), flush=True)
    [j() for j in [server.submit(time.sleep, (60,)) for _ in range(4)]]
"""


def start_and_read_pids(cmd, tmp_path, **popen):
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=clean_env(), cwd=tmp_path, **popen)
    line = proc.stdout.readline()
    assert line.startswith("pids"), proc.stderr.read() if proc.poll() is not None else line
    return proc, [int(p) for p in line.split()[1:]]


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
    assert not wait_all_gone(pids), "workers still running after the driver ended"


def test_ctrl_c_in_the_driver_leaves_no_worker(tmp_path):
    script = write_driver(tmp_path, BUSY_DRIVER)
    proc, pids = start_and_read_pids(
        [sys.executable, script], tmp_path,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert "KeyboardInterrupt" in err
    assert not wait_all_gone(pids), "workers outlived a Ctrl-C'd driver"


def test_workers_end_before_the_driver_does(tmp_path):
    """One worker busy, one idle at exit. Workers the driver leaves behind were ended by Open
    MPI's daemon after the driver, and that daemon could hang in its own end, holding the
    driver's stdout and stderr (seen after a Ctrl-C: a caller reading them never got EOF)."""
    script = write_driver(tmp_path, """
        import os, sys, time
        import ppmpi
        server = ppmpi.Server(2)
        busy = lambda: (time.sleep(0.3), os.getpid())[1]
        print("pids", *sorted({j() for j in [server.submit(busy) for _ in range(2)]}), flush=True)
        server.submit(time.sleep, (60,))
        time.sleep(0.5)
        sys.exit(3)
    """)
    proc, pids = start_and_read_pids([sys.executable, script], tmp_path)
    assert proc.wait(timeout=60) == 3
    assert not [p for p in pids if alive(p)], "workers outlived the driver"
    proc.communicate(timeout=30)  # EOF: nothing else holds the driver's stdout and stderr


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_killed_mpirun_leaves_no_process(tmp_path, sig):
    script = write_driver(tmp_path, BUSY_DRIVER)
    proc, pids = start_and_read_pids(
        ["mpirun", "--enable-recovery", "-np", "3", sys.executable, script], tmp_path,
        start_new_session=True)
    everyone = [int(p) for p in subprocess.run(["pgrep", "-s", str(proc.pid)],
                                               capture_output=True, text=True).stdout.split()]
    assert set(pids) <= set(everyone)
    proc.send_signal(sig)
    proc.communicate(timeout=60)
    left = wait_all_gone(everyone)
    for pid in left:  # only processes of the session this test started
        os.kill(pid, signal.SIGKILL)
    assert not left, f"processes outlived the killed mpirun: {left}"


def test_lost_world_rank_is_replaced_by_a_spawn(tmp_path):
    script = write_driver(tmp_path, """
        import ppmpi
        import os, signal, time
        server = ppmpi.Server(worker_timeout=2.0)
        busy = lambda: (time.sleep(0.3), os.getpid())[1]
        ranks = sorted({j() for j in [server.submit(busy) for _ in range(3)]})
        jobs = [server.submit(pow, (i, 2)) for i in range(2000)]
        os.kill(ranks[0], signal.SIGKILL)
        assert [j() for j in jobs] == [i * i for i in range(2000)]
        deadline = time.time() + 20
        now = ranks
        while (ranks[0] in now or len(now) != 3) and time.time() < deadline:
            now = sorted({j() for j in [server.submit(busy) for _ in range(3)]})
        print("after loss", server.get_ncpus(), len(now), ranks[0] in now)
        jobs = [server.submit(pow, (i, 3)) for i in range(500)]
        print("still serving", [j() for j in jobs] == [i ** 3 for i in range(500)])
    """)
    proc = subprocess.run(["mpirun", "--enable-recovery", "-np", "4", sys.executable, script],
                          capture_output=True, text=True, timeout=120, env=clean_env(),
                          cwd=tmp_path)
    assert "after loss 3 3 False" in proc.stdout, proc.stdout + proc.stderr
    assert "still serving True" in proc.stdout, proc.stdout + proc.stderr
    assert "lost" in proc.stderr


def test_shrink_then_new_servers_under_mpirun(tmp_path):
    """A worker retired alone must not leave a disconnect pending that blocks later spawns
    (it did when all workers of a Server came from one MPI_Comm_spawn)."""
    script = write_driver(tmp_path, """
        import ppmpi
        for i in range(4):
            server = ppmpi.Server(3)
            server.set_ncpus(1)
            assert server.submit(pow, (i, 2))() == i * i
            server.destroy()
        print("cycles done")
    """)
    proc = subprocess.run(["mpirun", "--enable-recovery", "-np", "1", sys.executable, script],
                          capture_output=True, text=True, timeout=120, env=clean_env(),
                          cwd=tmp_path)
    assert "cycles done" in proc.stdout, proc.stdout + proc.stderr


@pytest.mark.parametrize("ending, status", [("sys.exit(3)", 3), ("raise ValueError('x')", 1),
                                            ("print('fine')", 0)])
def test_ppmpirun_exits_with_the_drivers_status(tmp_path, ending, status):
    """mpirun --enable-recovery exits 0 whatever rank 0 did; ppmpirun must not."""
    script = write_driver(tmp_path, f"""
        import sys
        import ppmpi
        server = ppmpi.Server()
        assert server.submit(abs, (-2,))() == 2
        {ending}
    """)
    ppmpirun = os.path.join(os.path.dirname(ppmpi.__file__), "..", "..", "bin", "ppmpirun")
    cmd = [ppmpirun] if os.path.exists(ppmpirun) else [sys.executable, "-m", "ppmpi._ppmpirun"]
    proc = subprocess.run(cmd + ["-np", "2", script], capture_output=True, text=True,
                          timeout=120, env=clean_env(), cwd=tmp_path)
    assert proc.returncode == status, proc.stdout + proc.stderr


SHM_DRIVER = """
    import numpy as np
    import ppmpi
    server = ppmpi.Server(2)
    jobs = [server.submit(np.negative, (np.full(1 << 17 if i % 2 else 3, i, float),))
            for i in range(20)]
    assert [int(j().sum()) for j in jobs] == [-i * (1 << 17 if i % 2 else 3) for i in range(20)]
    print("OK")
"""


@pytest.mark.parametrize("shm", ["1", "0"])
def test_shared_memory_switch(tmp_path, shm):
    """Spawned workers on the driver's host use shared-memory rings unless PPMPI_SHM=0; the
    jobs give the same results either way (PPMPI_DEBUG shows the choice per worker)."""
    proc = run_driver(tmp_path, SHM_DRIVER, PPMPI_SHM=shm, PPMPI_DEBUG="1")
    assert proc.returncode == 0 and "OK" in proc.stdout, proc.stdout + proc.stderr
    shared = proc.stderr.count("frames through shared memory")
    assert shared == (2 if shm == "1" else 0), proc.stderr[-3000:]


# The first process it is asked to start never starts MPI (as a spawn stuck in PMIx_Init); the
# others are ppmpi-worker. The stalled one writes its pid, so the test ends it.
STALLING_WORKER = """#!/bin/sh
if mkdir "{marker}" 2>/dev/null; then echo $$ > "{pidfile}"; exec sleep 120; fi
exec "{worker}" "$@"
"""


def test_a_hanging_spawn_is_abandoned_and_retried(tmp_path):
    """A spawn that never returns costs a delay and a warning, not a hang: the attempt is
    abandoned after its bound (3 s, plus 0.5 s for the second process), a fresh one starts
    the workers, every job is right, and the driver ends normally although a thread is still
    inside the stuck MPI_Comm_spawn."""
    worker = os.path.join(os.path.dirname(ppmpi.__file__), "ppmpi-worker")
    wrapper = tmp_path / "stalling-worker.sh"
    pidfile = tmp_path / "stalled.pid"
    wrapper.write_text(STALLING_WORKER.format(marker=tmp_path / "stalled", pidfile=pidfile,
                                              worker=worker))
    wrapper.chmod(0o755)
    started = time.monotonic()
    try:
        proc = run_driver(tmp_path, """
            import os, time
            import ppmpi
            t = time.monotonic()
            server = ppmpi.Server(2)
            print("started in", round(time.monotonic() - t, 1), "s", flush=True)
            pids = {server.submit(os.getpid)() for _ in range(8)}
            assert [server.submit(pow, (2, i))() for i in range(10)] == [2 ** i for i in range(10)]
            server.set_ncpus(3)
            assert sum(server.submit(abs, (-i,))() for i in range(30)) == sum(range(30))
            print("OK", server.get_ncpus(), flush=True)
        """, timeout=90, PPMPI_WORKER=str(wrapper))
        elapsed = time.monotonic() - started
        out = proc.stdout + proc.stderr
        assert proc.returncode == 0 and "OK 3" in proc.stdout, out
        assert "did not return within 3.5 s" in proc.stderr, out
        assert "trying again (attempt 2 of 3)" in proc.stderr, out
        assert pidfile.exists(), out
        assert elapsed < 60, out
    finally:
        if pidfile.exists():
            stalled = int(pidfile.read_text())
            if alive(stalled):
                os.kill(stalled, signal.SIGKILL)
            assert wait_all_gone([stalled]) == []
