"""Dead, frozen, over-time, cancelled and poisonous jobs and workers: every result still comes
back, exactly once, and the server keeps serving. Workers are spawned by these servers and
killed by the pids they report, so nothing outside the test is touched."""
import logging
import os
import random
import signal
import time

import helpers
import ppmpi
import pytest

from conftest import launch_mode
from helpers import gone

# In every launch mode: lost workers are replaced by spawns, world ranks included (under
# mpirun the first servers get the world ranks, and the tests kill them too).

TRIALS, JOBS = 10, 1000
SEED = 20261124


def worker_pids(server, count):
    """The pids of `count` distinct workers (each busy at once, so each job lands elsewhere)."""
    jobs = [server.submit(helpers.pid_after, (0.2,)) for _ in range(count)]
    return sorted({job() for job in jobs})


def wait_until(predicate, timeout=20.0):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def faulty():
    server = ppmpi.Server(2, worker_timeout=1.5, max_retries=2)
    yield server
    server.destroy()


def test_killed_workers_at_random_moments(faulty):
    rng = random.Random(SEED)
    for trial in range(TRIALS):
        jobs = [faulty.submit(helpers.helper_square, (i,)) for i in range(JOBS)]
        kill_after = rng.randrange(JOBS)
        victims = worker_pids(faulty, 2)
        results = []
        for i, job in enumerate(jobs):
            if i == kill_after:
                os.kill(rng.choice(victims), signal.SIGKILL)
            results.append(job())
        assert results == [i * i for i in range(JOBS)], f"trial {trial}"
    # The last kill may come after the last result: its loss is noticed within ~0.1 s.
    assert wait_until(lambda: faulty._stats()["workers_lost"] >= TRIALS)
    assert wait_until(lambda: faulty.get_ncpus() == 2)
    assert sum(s.njobs for s in faulty.get_stats().values()) >= TRIALS * JOBS


def test_a_rerun_job_counts_once_in_the_stats(faulty, tmp_path):
    """pp counts at dispatch, so a job re-run after a loss was counted twice."""
    worker_pids(faulty, 2)  # both workers are up and have run a job
    before = sum(s.njobs for s in faulty.get_stats().values())
    where = str(tmp_path / "pid")
    job = faulty.submit(helpers.pid_to_file_then_sleep, (where, 1.0))
    assert wait_until(lambda: os.path.exists(where), 10)
    with open(where) as f:
        victim = int(f.read())
    # Only the worker running it: killing both at once can charge the job twice (the second
    # may look alive when the job is moved to it), which max_retries=2 would end.
    os.kill(victim, signal.SIGKILL)
    assert job() != victim
    assert sum(s.njobs for s in faulty.get_stats().values()) == before + 1


def test_frozen_worker_is_lost_and_replaced(faulty):
    victim = worker_pids(faulty, 2)[0]
    os.kill(victim, signal.SIGSTOP)
    try:
        jobs = [faulty.submit(helpers.sleep_and_return, (0.01, i)) for i in range(50)]
        assert [job() for job in jobs] == list(range(50))
        assert wait_until(lambda: gone(victim)), "the frozen worker was not killed"
        assert faulty.get_ncpus() == 2
    finally:
        if not gone(victim):
            os.kill(victim, signal.SIGKILL)


def test_large_arrays_in_flight_survive_a_killed_and_a_frozen_worker(faulty):
    """4 MiB arrays travel out-of-band both ways while one worker is killed and the other
    frozen, mid-stream: every result comes back once, from the replacements."""
    import numpy as np

    arrays = [np.full(1 << 19, i, dtype=np.float64) for i in range(40)]
    killed, frozen = worker_pids(faulty, 2)
    jobs = [faulty.submit(helpers.double, (a,)) for a in arrays]
    try:
        results = []
        for i, job in enumerate(jobs):
            if i == 5:
                os.kill(killed, signal.SIGKILL)
                os.kill(frozen, signal.SIGSTOP)
            results.append(job())
        for i, r in enumerate(results):
            assert r.shape == arrays[i].shape and r.min() == r.max() == 2 * i, f"job {i}"
        assert wait_until(lambda: gone(frozen)), "the frozen worker was not killed"
        assert wait_until(lambda: faulty.get_ncpus() == 2)
    finally:
        if not gone(frozen):
            os.kill(frozen, signal.SIGKILL)


def test_job_timeout_fails_the_job_and_replaces_the_worker(faulty):
    before = worker_pids(faulty, 2)
    start = time.monotonic()
    job = faulty.submit(helpers.sleep_and_return, (60, "never"), timeout=0.5)
    with pytest.raises(ppmpi.JobTimeout, match=rf"job {job.tid} .*timeout of 0.5 s"):
        job()
    assert time.monotonic() - start < 10
    assert faulty.submit(helpers.helper_square, (4,))() == 16
    assert wait_until(lambda: any(gone(pid) for pid in before))
    assert faulty.get_ncpus() == 2


def test_server_wide_job_timeout():
    with ppmpi.Server(1, job_timeout=0.5) as server:
        with pytest.raises(ppmpi.JobTimeout):
            server.submit(helpers.sleep_and_return, (60, None))()
        assert server.submit(helpers.sleep_and_return, (0.01, 5))() == 5


def test_cancel_pending_and_running(faulty):
    running = [faulty.submit(helpers.sleep_and_return, (60, i)) for i in range(2)]
    pending = faulty.submit(helpers.helper_square, (3,))
    time.sleep(0.3)
    assert pending.cancel()
    assert all(job.cancel() for job in running)
    import concurrent.futures
    for job in running + [pending]:
        with pytest.raises(concurrent.futures.CancelledError):
            job()
    assert faulty.submit(helpers.helper_square, (5,))() == 25
    done = faulty.submit(helpers.helper_square, (6,))
    assert done() == 36
    assert not done.cancel()


@pytest.mark.parametrize("poison", [helpers.die_hard, helpers.segfault])
def test_poison_job_fails_with_worker_lost_after_max_retries(faulty, poison):
    good = [faulty.submit(helpers.helper_square, (i,)) for i in range(20)]
    bad = faulty.submit(poison, (0,))
    with pytest.raises(ppmpi.WorkerLost, match=rf"job {bad.tid} .*max_retries=2"):
        bad()
    assert [job() for job in good] == [i * i for i in range(20)]
    assert faulty.submit(helpers.helper_square, (7,))() == 49
    assert faulty.get_ncpus() == 2


def test_hostile_jobs_are_clear_exceptions(faulty):
    with pytest.raises(RecursionError):
        faulty.submit(helpers.recurse, (0,))()
    with pytest.raises(MemoryError):
        faulty.submit(helpers.allocate_too_much, (1 << 20,))()
    assert faulty.submit(helpers.helper_square, (8,))() == 64


def test_job_printing_megabytes(faulty, capsys):
    assert faulty.submit(helpers.print_megabytes, (4,))() == 4
    assert len(capsys.readouterr().out) >= 4 << 20


def test_quarter_gib_argument():
    """Default worker_timeout: a worker receiving a large argument sends no heartbeat until it
    has arrived (docs/fault-tolerance.md), so the faulty fixture's 1.5 s is too short for
    256 MiB over TCP."""
    data = b"\x01" * (256 << 20)
    with ppmpi.Server(1) as server:
        assert server.submit(helpers.length_of, (data,))() == len(data)




@pytest.mark.skipif(launch_mode() != "alone", reason="a server's first workers are world ranks "
                    "under mpirun, and world ranks talk over MPI (no rings)")
def test_spawned_workers_share_memory_and_survive_a_killed_one(caplog):
    """Workers spawned on the master's host send and receive frames through shared-memory
    rings (docs/architecture.md, "Shared memory"), large arrays streamed through them in parts,
    in order, while one of them is killed. (PPMPI_SHM=0: test_drivers.py.)"""
    import numpy as np

    ppmpi.debug(True)
    try:
        with caplog.at_level(logging.DEBUG, logger="ppmpi"):
            with ppmpi.Server(2, worker_timeout=1.5) as server:
                killed = worker_pids(server, 2)[0]
                # small arrays whole, 1 MiB ones streamed (larger than a quarter of the ring)
                jobs = [server.submit(helpers.double, (np.full(1 << 17 if i % 3 else 1, i, float),))
                        for i in range(60)]
                os.kill(killed, signal.SIGKILL)
                for i, job in enumerate(jobs):
                    r = job()
                    assert r.min() == r.max() == 2 * i, f"job {i}"
                assert wait_until(lambda: gone(killed))
            messages = [r.getMessage() for r in caplog.records if r.name == "ppmpi"]
    finally:
        ppmpi.debug(False)
    assert sum("frames through shared memory" in m for m in messages) >= 2, messages[-20:]
