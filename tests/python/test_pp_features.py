"""pp behaviours beyond submit/job(): callbacks, groups, globals=, restart=, namespaces that do
not leak, statistics (and SIGUSR1), logging. Runs in every launch mode (SIGUSR1: alone)."""
import logging
import math
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time

import pytest
from conftest import launch_mode
from helpers import add, bump_counter, needs_extra_helper, sleep_and_return

import ppmpi


def test_callback_that_raises_is_logged_and_never_hangs(fresh_server, caplog):
    def bad_callback(result):
        raise RuntimeError(f"callback broke on {result}")

    with caplog.at_level(logging.ERROR, logger="ppmpi"):
        job = fresh_server.submit(add, (1, 2), callback=bad_callback)
        assert job() == 3
        fresh_server.wait()
    assert job.finished
    assert any("callback" in r.getMessage() and r.exc_info for r in caplog.records)


def test_callbacks_run_one_at_a_time_with_callbackargs(fresh_server):
    state = {"inside": 0, "most": 0, "got": []}
    guard = threading.Lock()

    def collect(tag, result):
        with guard:
            state["inside"] += 1
            state["most"] = max(state["most"], state["inside"])
        time.sleep(0.01)
        with guard:
            state["inside"] -= 1
            state["got"].append((tag, result))

    for i in range(20):
        fresh_server.submit(add, (i,), callback=collect, callbackargs=("t",))
    fresh_server.wait()
    assert state["most"] == 1
    assert sorted(state["got"]) == [("t", i) for i in range(20)]


def test_wait_for_one_group_only(fresh_server):
    slow = fresh_server.submit(sleep_and_return, (3.0, "slow"), group="slow")
    quick = [fresh_server.submit(add, (i,), group="quick") for i in range(5)]
    start = time.monotonic()
    fresh_server.wait("quick")
    assert time.monotonic() - start < 2.5
    assert all(job.finished for job in quick) and not slow.finished
    fresh_server.wait("no such group")  # returns at once
    assert slow() == "slow"


def extra_helper(n):
    return n * 3


def test_globals_ships_functions_and_modules(server):
    namespace = {"extra_helper": extra_helper, "m": math, "x": 1}
    assert server.submit(needs_extra_helper, (5,), globals=namespace)() == 15


def test_a_depfunc_of_one_job_does_not_leak_to_the_next():
    # pp execs depfuncs into one worker namespace, so a job that forgot one succeeded or
    # failed depending on what its worker ran before; here it fails every time.
    with ppmpi.Server(1) as one:
        assert one.submit(needs_extra_helper, (2,), (extra_helper,))() == 6
        with pytest.raises(NameError, match="extra_helper"):
            one.submit(needs_extra_helper, (2,))()
        assert one.submit(needs_extra_helper, (3,), (extra_helper,))() == 9


def test_restart_gives_every_job_a_fresh_namespace():
    with ppmpi.Server(1, restart=True) as fresh:
        assert [fresh.submit(bump_counter)() for _ in range(3)] == [1, 1, 1]
    with ppmpi.Server(1) as kept:
        counts = [kept.submit(bump_counter)() for _ in range(3)]
        assert counts[1:] == [counts[0] + 1, counts[0] + 2]


def test_stats_one_row_per_worker_and_print_stats(fresh_server, capsys):
    jobs = [fresh_server.submit(add, (i,)) for i in range(10)]
    assert sorted(job() for job in jobs) == list(range(10))
    stats = fresh_server.get_stats()
    assert sum(s.njobs for s in stats.values()) == 10
    assert all(":" in label and s.ncpus == 1 for label, s in stats.items())
    running = fresh_server.submit(sleep_and_return, (1.0, 0))
    time.sleep(0.4)
    fresh_server.print_stats()
    out = capsys.readouterr().out
    assert "Job execution statistics:" in out and " job count | % of all jobs" in out
    assert f"job {running.tid} on " in out and "Running now:" in out
    assert "1 active tasks, 2 cores" in out
    running()


def test_debug_switch_shows_the_dispatchers_messages(caplog):
    ppmpi.debug(True)
    try:
        with caplog.at_level(logging.DEBUG, logger="ppmpi"):
            with ppmpi.Server(1) as one:
                job = one.submit(add, (1,))
                assert job() == 1
                deadline = time.monotonic() + 5
                wanted = f"job {job.tid} done on worker"
                while time.monotonic() < deadline and not any(
                        wanted in r.getMessage() for r in caplog.records):
                    time.sleep(0.05)
    finally:
        ppmpi.debug(False)
    messages = [r.getMessage() for r in caplog.records if r.name == "ppmpi"]
    assert any(wanted in m for m in messages), messages[-10:]
    assert any(f"job {job.tid} sent to worker" in m for m in messages)


@pytest.mark.skipif(launch_mode() != "alone", reason="starts its own singleton driver")
def test_sigusr1_prints_statistics_and_running_jobs(tmp_path):
    script = tmp_path / "driver.py"
    script.write_text(textwrap.dedent("""
        import time
        import ppmpi
        server = ppmpi.Server(2)
        [j() for j in [server.submit(abs, (-i,)) for i in range(4)]]
        job = server.submit(time.sleep, (3,))
        print("ready", flush=True)
        job()
    """))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMPI_COMM_WORLD", "PMIX_"))}
    proc = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=tmp_path)
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.5)
        proc.send_signal(signal.SIGUSR1)
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    assert "Job execution statistics:" in out and "Running now:" in out
    assert "4 jobs" not in err
