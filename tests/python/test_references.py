"""No stale references (issue 33): once a job or future is done and its owner drops it, ppmpi
holds nothing of it: not the function (nor the object a bound method belongs to), not the
arguments, not the result. Checked with weak references on instances of user classes, for
Server.submit (pp's API, with and without callbacks, job.future), ppmpi.Executor (submit and
map), the master's cache of pickled functions, a job's own children (nested jobs), and over a
long run whose results are dropped. Runs in every launch mode.

Where a check runs with the cyclic garbage collector off, what it checks is that reference
counting alone frees everything, as soon as it is dropped (no reference cycle is left behind:
CPython's test_no_stale_references waits without collecting)."""
import concurrent.futures as cf
import contextlib
import gc
import time
import tracemalloc
import weakref

import numpy
import pytest
from helpers import (Point, Scaler, TrackedError, add, array_sum, children_results_alive,
                     make_point)

import ppmpi
from ppmpi import _core, _serialize

WAIT_S = 30.0  # bound of every wait for a job's outcome


@pytest.fixture(scope="module")
def ex():
    with ppmpi.Executor(2) as executor:
        yield executor


@contextlib.contextmanager
def no_cyclic_gc():
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def still_alive(refs, collect, timeout=10.0):
    """Names of the referents still alive once `timeout` s passed (polled: the notifier thread
    may still be returning from the call that completed the future)."""
    deadline = time.monotonic() + timeout
    while True:
        if collect:
            gc.collect()
        alive = [name for name, ref in refs.items() if ref() is not None]
        if not alive or time.monotonic() > deadline:
            return [f"{name} (referred to by {_referrers(refs[name])})" for name in alive]
        time.sleep(0.01)


def _referrers(ref):
    obj = ref()
    if obj is None:
        return "nothing: freed meanwhile"
    return sorted(type(r).__name__ for r in gc.get_referrers(obj))


def refs_of(**objects):
    return {name: weakref.ref(obj) for name, obj in objects.items()}


def closure_over(obj):
    return lambda k: obj.x * k


# -- pp's API: Server.submit ---------------------------------------------------------------

def test_a_taken_job_lets_go_of_its_function_args_and_result(server):
    scaler, point = Scaler(3), Point(1, 2)
    job = server.submit(scaler.scale, (point,))
    assert job.wait(WAIT_S)
    result = job()
    assert (result.x, result.y) == (3, 6)
    refs = refs_of(function_owner=scaler, argument=point, result=result)
    del job, result, point, scaler
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)


def test_a_job_dropped_unseen_lets_go_and_is_forgotten(server):
    scaler, point = Scaler(2), Point(4, 5)
    job = server.submit(scaler.scale, (point,))
    tid = job.tid
    refs = refs_of(function_owner=scaler, argument=point)
    del job, point, scaler
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)
    # The job table drops its outcome once it is in (nobody can take it any more).
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            server._pool.done(tid)
        except _core.UnknownJobError:
            break
        assert time.monotonic() < deadline, "the dropped job's outcome is still kept"
        time.sleep(0.01)


def test_a_callback_job_lets_go_of_everything_once_the_callback_ran(server):
    scaler, point, tag = Scaler(5), Point(1, 1), Point(0, 0)
    got = []

    class Collector:
        def collect(self, tag, result):
            got.append((tag, result))

    collector = Collector()
    job = server.submit(scaler.scale, (point,), callback=collector.collect, callbackargs=(tag,))
    assert job.wait(WAIT_S)
    assert got and got[0][0] is tag and got[0][1].x == 5
    refs = refs_of(function_owner=scaler, argument=point, result=got[0][1], callback=collector,
                   callbackarg=tag)
    del job, point, scaler, collector, tag
    got.clear()
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)


def test_a_job_future_lets_go_of_the_job_and_result(server):
    scaler, point = Scaler(7), Point(1, 0)
    job = server.submit(scaler.scale, (point,))
    future = job.future
    result = future.result(WAIT_S)
    assert result.x == 7
    refs = refs_of(function_owner=scaler, argument=point, result=result, job=job, future=future)
    del job, future, result, point, scaler
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)


def test_a_failed_job_lets_go_of_its_function_args_and_error(server):
    scaler, point = Scaler(1), Point(2, 3)
    job = server.submit(scaler.explode, (point,))
    with pytest.raises(TrackedError) as info:
        job()
    assert info.value.args[0].x == 2
    refs = refs_of(function_owner=scaler, argument=point, error=info.value,
                   errors_payload=info.value.args[0])
    del job, scaler, point, info
    assert not still_alive(refs, collect=True)  # a raised exception's traceback is a cycle


def test_a_lambda_and_what_it_closes_over_are_not_kept_by_the_bundle_cache(server):
    big = Point(6, 7)
    func = closure_over(big)  # by value: cloudpickled with its closure
    job = server.submit(func, (2,))
    assert job() == 12
    refs = refs_of(function=func, closed_over=big)
    entries = len(_serialize._bundle_cache._entries)
    del job, func, big
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)
    assert len(_serialize._bundle_cache._entries) < entries  # its entry went with it


def test_a_large_out_of_band_argument_is_let_go(server):
    array = numpy.arange(1 << 17, dtype=numpy.float64)  # 1 MiB: sent out-of-band, no copy
    job = server.submit(array_sum, (array,))
    assert job() == float(array.sum())
    refs = refs_of(argument=array)
    del job, array
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)


def test_a_large_argument_of_a_job_never_taken_is_let_go_with_nothing_submitted_after():
    """The send's end is seen on the MPI thread, which never takes the GIL: the argument's
    export is released by a pending call on the main thread, not at some later submit."""
    with ppmpi.Server(1) as server:
        array = numpy.arange(1 << 17, dtype=numpy.float64)
        job = server.submit(array_sum, (array,))
        refs = refs_of(argument=array)
        del array
        assert job.wait(WAIT_S)  # done, not taken; and nothing submitted after it
        with no_cyclic_gc():
            assert not still_alive(refs, collect=False)
        assert job() > 0


# -- ppmpi.Executor --------------------------------------------------------------------------

def test_executor_submit_lets_go_of_function_args_and_result(ex):
    scaler, point = Scaler(2), Point(3, 4)
    future = ex.submit(scaler.scale, point)
    result = future.result(WAIT_S)
    assert (result.x, result.y) == (6, 8)
    refs = refs_of(function_owner=scaler, argument=point, result=result, future=future)
    del future, result, point, scaler
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False)


def test_executor_discarded_future_lets_go_when_done(ex):
    """CPython's test_no_stale_references, with an argument too."""
    scaler, point = Scaler(2), Point(3, 4)
    ex.submit(scaler.scale, point)  # the future is dropped at once
    refs = refs_of(function_owner=scaler, argument=point)
    del point, scaler
    with no_cyclic_gc():
        assert not still_alive(refs, collect=False, timeout=WAIT_S)


@pytest.mark.parametrize("chunksize,progress", [(1, False), (3, False), (1, True)])
def test_executor_map_lets_go_of_each_result_once_yielded(ex, chunksize, progress):
    """CPython's test_free_reference, one by one, in chunks and with a progress bar; then
    the function and the arguments once the map is over."""
    scaler = Scaler(1)
    points = [Point(i, i) for i in range(10)]
    refs = refs_of(function_owner=scaler, **{f"argument {i}": p for i, p in enumerate(points)})
    seen = 0
    with no_cyclic_gc():
        for obj in ex.map(scaler.scale, points, timeout=WAIT_S, chunksize=chunksize,
                          progress=progress):
            assert obj.x == seen
            ref = weakref.ref(obj)
            del obj
            assert ref() is None, "a result the caller dropped is still referenced"
            seen += 1
        assert seen == 10
        del points, scaler
        assert not still_alive(refs, collect=False)


def test_executor_map_of_a_failing_call_lets_go(ex):
    scaler = Scaler(1)
    results = ex.map(scaler.scale, [Point(1, 1), "not a point", Point(2, 2)], timeout=WAIT_S)
    assert next(results).x == 1
    with pytest.raises(AttributeError):
        next(results)
    refs = refs_of(function_owner=scaler)
    del results, scaler
    assert not still_alive(refs, collect=True)


def test_executor_failed_future_lets_go(ex):
    scaler, point = Scaler(1), Point(5, 6)
    future = ex.submit(scaler.explode, point)
    error = future.exception(WAIT_S)
    assert isinstance(error, TrackedError) and error.args[0].x == 5
    refs = refs_of(function_owner=scaler, argument=point, error=error, future=future)
    del future, error, scaler, point
    assert not still_alive(refs, collect=True)


# -- nested jobs: a job's own children ------------------------------------------------------

def test_a_job_lets_go_of_the_children_it_took(server):
    """A job that submits 500 children (ppmpi.get_executor()) and drops each result: at most
    the children since the last pruning of its server's list are alive (were: all 500)."""
    from ppmpi import _nested

    n = 500
    assert server.submit(children_results_alive, (n,))() < 2 * _nested.PRUNE_MIN


# -- the bundle cache holds its functions weakly, and still finds them ------------------------

def test_bundle_cache_finds_a_bound_method_again_and_forgets_it_with_its_object():
    cache = _serialize._bundles.BundleCache()
    scaler = Scaler(4)
    key, data = cache.get(scaler.scale, (), (), False, None, 5)
    assert cache.get(scaler.scale, (), (), False, None, 5)[1] is data  # a new method object
    assert len(cache._entries) == 1
    ref = weakref.ref(scaler)
    del scaler
    assert ref() is None and len(cache._entries) == 0


def test_bundle_cache_drops_a_by_value_function_with_it():
    cache = _serialize._bundles.BundleCache()
    func = lambda x: x + 1  # noqa: E731
    data = cache.get(func, (), (), False, None, 5)[1]
    assert cache.get(func, (), (), False, None, 5)[1] is data
    del func
    assert len(cache._entries) == 0


# -- a long run ---------------------------------------------------------------------------------

LONG_RUN = 2000  # jobs of each kind


def _run_every_kind(server, ex, got):
    """LONG_RUN jobs of each kind, results dropped; returns the first and last job ids."""
    n = LONG_RUN
    first = server.submit(make_point, (-1,))
    for i in range(n):
        job = server.submit(make_point, (i,))
        assert job().x == i
    for i in range(n):
        server.submit(make_point, (i,), callback=got.append)
    for i in range(n):
        server.submit(lambda i=i: i, ())  # new functions each time, dropped unseen
    for i in range(n):
        ex.submit(add, i)
    assert sum(1 for _ in ex.map(make_point, range(n), timeout=WAIT_S, chunksize=50)) == n
    deadline = time.monotonic() + WAIT_S
    notified = server._completions._notified  # the jobs whose completion is still to handle
    while ex._pending or len(got) < n or notified or server._pool.unfinished(-1):
        assert time.monotonic() < deadline, "the jobs did not finish"
        time.sleep(0.01)
    got.clear()
    last = server.submit(make_point, (-2,))
    assert first().x == -1 and last().x == -2
    return first.tid, last.tid


def _objects_alive():
    """How many Jobs, futures and results (Points) exist."""
    gc.collect()
    kinds = (ppmpi.Job, cf.Future, Point)
    return sum(1 for obj in gc.get_objects() if isinstance(obj, kinds))


def _jobs_kept(server, first, last):
    kept = 0
    for tid in range(first, last + 1):  # job ids are the process's: the executor's are unknown
        try:                             # to this server's table too
            server._pool.done(tid)
            kept += 1
        except _core.UnknownJobError:
            pass
    return kept


def test_a_long_run_keeps_nothing_per_job(ex, fresh_server):
    """2,000 jobs of each kind whose results are dropped: taken pp jobs, pp jobs with a
    callback, pp jobs dropped unseen (each with a new function), Executor futures dropped at
    once, one map. Afterwards nothing per job is left: not in the server's bookkeeping, the job
    table, the executor's or the bundle cache; no Job, future or result object is alive; and
    Python's memory did not grow with the number of jobs."""
    server, got = fresh_server, []
    # Twice first: what is made once (caches, the dicts' and free lists' sizes) is then made.
    _run_every_kind(server, ex, got)
    _run_every_kind(server, ex, got)
    objects, cache_entries = _objects_alive(), len(_serialize._bundle_cache._entries)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        first, last = _run_every_kind(server, ex, got)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert not server._completions._notified and not ex._pending
    kept = _jobs_kept(server, first, last)
    assert kept == 0, f"the job table still holds {kept} of the run's jobs"
    assert len(_serialize._bundle_cache._entries) <= cache_entries + 2
    assert _objects_alive() <= objects, "Jobs, futures or results of the run are still alive"
    # A Job, a future or a result kept per job would be hundreds of bytes each, megabytes over
    # the 10,000 jobs; what may stay is bounded (free lists, dicts' tables): ~0.1 MB measured.
    assert grown < 1_000_000, f"Python's memory grew by {grown} bytes over {5 * LONG_RUN} jobs"
