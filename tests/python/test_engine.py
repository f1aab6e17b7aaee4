"""The engine under the API: thread-safe submit, the content-keyed function cache, pool size,
and quiet idling."""
import concurrent.futures
import os
import time

import helpers
import ppmpi
import pytest


def test_submit_from_many_threads(server):
    def work(n):
        return server.submit(helpers.helper_square, (n,))()

    with concurrent.futures.ThreadPoolExecutor(max_workers=8) as pool:
        futures = {pool.submit(work, n): n for n in range(200)}
        results = {futures[f]: f.result() for f in concurrent.futures.as_completed(futures)}
    assert results == {n: n * n for n in range(200)}


def test_regenerated_functions_are_never_confused(server):
    """pp's id()-keyed cache returned stale code here (pp-reference §6)."""
    results = []
    for k in range(5):
        code = compile(f"def f(x):\n    return x + {k * 100}\n", "<gen>", "exec")
        namespace = {}
        exec(code, namespace)
        results.append(server.submit(namespace["f"], (1,))())
        del namespace
    assert results == [1, 101, 201, 301, 401]


def test_function_bytes_cross_once_per_worker():
    with ppmpi.Server(2) as s:
        jobs = [s.submit(helpers.sum_primes, (n,), (helpers.isprime,)) for n in range(300)]
        assert [j() for j in jobs] == [helpers.sum_primes(n) for n in range(300)]
        stats = s._stats()
        assert stats["tasks_sent"] - stats["jobs_taken_back"] == 300  # a taken-back job: twice
        assert 1 <= stats["function_defs_sent"] <= 2  # at most once per worker


def _started(server):
    """(workers not heard from yet, workers welcomed) right now."""
    stats = server._stats()
    return stats["workers_starting"], len(stats["per_worker"])


def test_a_server_returns_with_its_workers_started():
    """The first jobs do not wait for the workers' start-up (Hello ~0.01-0.03 s after the
    spawn returns); set_ncpus waits for the workers it adds the same way."""
    with ppmpi.Server(2) as s:
        assert _started(s) == (0, 2)
        s.set_ncpus(3)
        assert _started(s) == (0, 3)


def test_worker_warm_up_runs_a_job():
    """Spawned workers run it while MPI starts and ignore its failure (configure() imports
    again), so a broken warm-up would only show here."""
    from ppmpi import _worker

    _worker.warm_up()


def test_a_job_from_a_module_that_imports_ppmpis_names(server):
    import uses_ppmpi

    # Workers serve from ppmpi's first line; the job's module still finds the public names.
    assert server.submit(uses_ppmpi.names_seen)() == ("Server", "NoWorkers")


def test_set_ncpus_grows_and_shrinks(fresh_server):
    fresh_server.set_ncpus(3)
    assert fresh_server.get_ncpus() == 3
    jobs = [fresh_server.submit(helpers.pid_after, (0.2,)) for _ in range(6)]
    assert len({j() for j in jobs}) == 3
    fresh_server.set_ncpus(1)
    deadline = time.time() + 30
    while fresh_server.get_ncpus() != 1 and time.time() < deadline:
        time.sleep(0.05)
    assert fresh_server.get_ncpus() == 1
    assert [fresh_server.submit(helpers.helper_square, (i,))() for i in range(4)] == [0, 1, 4, 9]


def _cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def test_idle_master_and_workers_stay_quiet(fresh_server):
    """Idle ranks poll with a sleeping backoff: each well under 5 % of a core."""
    pids = {j() for j in [fresh_server.submit(helpers.pid_after, (0.3,)) for _ in range(2)]}
    pids.discard(os.getpid())
    if len(pids) < 2:
        pytest.skip("workers are python3 ranks sharing this process's accounting")
    time.sleep(0.5)  # let the backoff reach its cap
    window = 3.0
    before = {pid: _cpu_seconds(pid) for pid in pids}
    master_before = time.process_time()
    time.sleep(window)
    master_share = (time.process_time() - master_before) / window
    worker_share = {pid: (_cpu_seconds(pid) - t) / window for pid, t in before.items()}
    assert master_share < 0.05, f"idle master used {master_share:.1%} of a core"
    for pid, share in worker_share.items():
        assert share < 0.05, f"idle worker {pid} used {share:.1%} of a core"
