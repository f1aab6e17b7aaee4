"""ppmpi.Executor against what concurrent.futures.ProcessPoolExecutor promises, and pp jobs
as futures (job.future). Runs in every launch mode."""
import concurrent.futures as cf
import time

import pytest
from helpers import (add, fail, failing_initializer, mark_initialized, pid_and_init_marks,
                     sleep_and_return)

import ppmpi
from ppmpi import RemoteTraceback


@pytest.fixture(scope="module")
def ex():
    with ppmpi.Executor(2) as executor:
        yield executor


def test_submit_with_args_and_kwargs(ex):
    assert ex.submit(add, 1, 2, scale=10).result(timeout=30) == 30
    assert ex.submit(add, 5).result(timeout=30) == 5


def test_map_keeps_order_one_by_one_and_in_chunks(ex):
    assert list(ex.map(add, range(500), range(500))) == [2 * i for i in range(500)]
    n = 100_000
    assert list(ex.map(add, range(n), chunksize=1000)) == list(range(n))
    assert list(ex.map(add, range(10), chunksize=3)) == list(range(10))  # a short last chunk
    assert list(ex.map(add, [])) == []


def test_map_raises_at_the_failing_item_after_earlier_results(ex):
    results = ex.map(fail, [ValueError] * 3, ["first", "second", "third"])
    with pytest.raises(ValueError, match="first"):
        next(results)
    items = ex.map(sleep_and_return, [0, 0, 0], [1, 2, 3])
    assert list(items) == [1, 2, 3]


def test_map_checks_chunksize_and_times_out(ex):
    with pytest.raises(ValueError, match="chunksize"):
        ex.map(add, [1], chunksize=0)
    with ppmpi.Executor(1) as one:  # its own worker: the slow call runs on after the time-out
        results = one.map(sleep_and_return, [1.5], [1], timeout=0.3)
        with pytest.raises(cf.TimeoutError):
            list(results)


def test_exceptions_travel_in_futures(ex):
    future = ex.submit(fail, KeyError, "missing")
    error = future.exception(timeout=30)
    assert isinstance(error, KeyError)
    assert isinstance(error.__cause__, RemoteTraceback)
    with pytest.raises(KeyError):
        future.result()


def test_futures_work_with_wait_and_as_completed(ex):
    slow = ex.submit(sleep_and_return, 1.0, "slow")
    fast = ex.submit(sleep_and_return, 0.0, "fast")
    done, not_done = cf.wait([slow, fast], timeout=30, return_when=cf.FIRST_COMPLETED)
    assert fast in done
    assert [f.result() for f in cf.as_completed([slow, fast], timeout=30)][-1] == "slow"


def test_cancel_pending_futures_but_not_running_ones():
    with ppmpi.Executor(1) as one:
        running = one.submit(sleep_and_return, 1.0, "ran")
        time.sleep(0.3)  # dispatched by now: one worker, one job in flight
        queued = [one.submit(add, i) for i in range(5)]
        assert not running.cancel()
        assert all(f.cancel() for f in queued)
        assert all(f.cancelled() and f.done() for f in queued)
        with pytest.raises(cf.CancelledError):
            queued[0].result()
        done, _ = cf.wait(queued, timeout=5)
        assert len(done) == 5
        assert running.result(timeout=30) == "ran"


def test_shutdown_semantics():
    executor = ppmpi.Executor(1)
    running = executor.submit(sleep_and_return, 0.8, "done")
    time.sleep(0.3)
    queued = [executor.submit(add, i) for i in range(3)]
    executor.shutdown(wait=True, cancel_futures=True)
    assert running.result() == "done"
    assert all(f.cancelled() for f in queued)
    with pytest.raises(RuntimeError, match="after shutdown"):
        executor.submit(add, 1)
    executor.shutdown()  # twice is fine


def test_shutdown_without_wait_lets_futures_finish():
    executor = ppmpi.Executor(1)
    futures = [executor.submit(sleep_and_return, 0.2, i) for i in range(3)]
    start = time.monotonic()
    executor.shutdown(wait=False)
    assert time.monotonic() - start < 0.2
    assert [f.result(timeout=30) for f in futures] == [0, 1, 2]


def test_initializer_runs_once_per_worker():
    with ppmpi.Executor(2, initializer=mark_initialized, initargs=("I",)) as executor:
        seen = dict(executor.map(pid_and_init_marks, range(40)))
        seen.update(executor.map(pid_and_init_marks, range(40), chunksize=4))
    assert seen and all(marks.endswith("I") and "II" not in marks for marks in seen.values())


def test_failing_initializer_breaks_the_tasks():
    with ppmpi.Executor(1, initializer=failing_initializer) as executor:
        error = executor.submit(add, 1).exception(timeout=30)
    assert isinstance(error, cf.BrokenExecutor)
    assert "no such resource" in str(error)


def test_bad_arguments_raise_clearly():
    with pytest.raises(ValueError, match="max_workers"):
        ppmpi.Executor(0)
    with pytest.raises(TypeError, match="initializer"):
        ppmpi.Executor(1, initializer=3)


def test_unpicklable_argument_raises_at_submit(ex):
    import threading

    with pytest.raises(TypeError, match="keyword argument 'b'"):
        ex.submit(add, 1, b=threading.Lock())


def test_job_future_of_pp_jobs(server):
    jobs = [server.submit(add, (i, 1)) for i in range(6)]
    futures = [job.future for job in jobs]
    done, _ = cf.wait(futures, timeout=30)
    assert len(done) == 6 and sorted(f.result() for f in futures) == [1, 2, 3, 4, 5, 6]
    assert [job() for job in jobs] == [1, 2, 3, 4, 5, 6]  # job() still works
    taken = server.submit(add, (7,))
    assert taken() == 7
    assert taken.future.result(timeout=1) == 7  # a future made after the result was taken


def test_job_future_with_a_callback_completes_after_it(server):
    seen = []
    job = server.submit(add, (2, 3), callback=seen.append)
    assert job.future.result(timeout=30) == 5
    assert seen == [5]


def test_map_and_wait_show_progress_when_asked(server, ex, capsys):
    assert list(ex.map(add, range(50), progress=True)) == list(range(50))
    jobs = [server.submit(sleep_and_return, (0.05, i), group="progress") for i in range(20)]
    server.wait("progress", progress=True)
    assert all(job.finished for job in jobs)
    err = capsys.readouterr().err
    assert "50/50" in err and err.count("100%") >= 2
