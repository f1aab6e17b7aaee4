"""A concurrent.futures face on ppmpi's engine: ``ppmpi.Executor`` is to ppmpi what
ProcessPoolExecutor is to multiprocessing, and mpi4py.futures.MPIPoolExecutor to mpi4py.

    with ppmpi.Executor() as ex:
        squares = list(ex.map(pow, range(10**5), [2] * 10**5, chunksize=1000))
        future = ex.submit(sorted, data, reverse=True)

Its futures are concurrent.futures.Future objects, so concurrent.futures.wait and
as_completed work on them (and on pp jobs' ``job.future``)."""
import concurrent.futures
import threading
import time
import uuid

from . import _parallel, _pickling, _progress
from ._checks import check_seconds
from .server import Server


class Executor(concurrent.futures.Executor):
    """``Executor(max_workers=None, *, initializer=None, initargs=(), worker_timeout=5.0,
    max_retries=3, job_timeout=None)``: max_workers workers (default: the worker ranks of an
    mpirun world, else the CPUs online), started at once. initializer(*initargs) runs once in
    each worker process before its first task of this executor; if it raises, the task fails
    with BrokenExecutor. The keyword-only options are Server's (dead and hung workers)."""

    def __init__(self, max_workers=None, *, initializer=None, initargs=(), worker_timeout=5.0,
                 max_retries=3, job_timeout=None):
        if max_workers is not None:
            if isinstance(max_workers, bool) or not isinstance(max_workers, int):
                raise TypeError(f"max_workers must be an int, not {type(max_workers).__name__}")
            if max_workers <= 0:
                raise ValueError("max_workers must be greater than 0")
        if initializer is not None and not callable(initializer):
            raise TypeError("initializer must be a callable")
        if not isinstance(initargs, tuple):
            raise TypeError(f"initargs must be a tuple, not {type(initargs).__name__}")
        self._server = Server("autodetect" if max_workers is None else max_workers,
                              worker_timeout=worker_timeout, max_retries=max_retries,
                              job_timeout=job_timeout)
        # Keyed so that a worker runs it once, whichever of this executor's functions comes
        # first (see _worker.WorkerRuntime).
        self._init = (uuid.uuid4().hex, initializer, initargs) if initializer else None
        self._lock = threading.Lock()
        self._shutdown = False
        self._pending = set()

    @property
    def server(self):
        """The pp Server underneath (get_stats, print_stats, set_ncpus...)."""
        return self._server

    def submit(self, fn, /, *args, **kwargs):
        """Schedules ``fn(*args, **kwargs)``; returns a Future."""
        return self._submit(fn, _pickling.KwCall(args, kwargs) if kwargs else args)

    def _submit(self, fn, payload):
        nranks = None
        if isinstance(fn, _parallel.parallel):  # a parallel job: its future's result is a list
            fn, nranks = fn.fn, _parallel.check_nranks(fn.nranks, self._server._ncpus, False)
        with self._lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            future = self._server._submit(fn, payload, init=self._init, nranks=nranks).future
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future):
        with self._lock:
            self._pending.discard(future)

    def map(self, fn, *iterables, timeout=None, chunksize=1, progress=False):
        """Like ProcessPoolExecutor.map: every call is submitted at once, results come back in
        order, and an exception raised by a call is raised when its result is reached.
        chunksize: calls sent together as one job (for many small calls). progress=True
        shows a progress bar of the results taken."""
        if isinstance(chunksize, bool) or not isinstance(chunksize, int):
            raise TypeError(f"chunksize must be an int, not {type(chunksize).__name__}")
        if chunksize < 1:
            raise ValueError("chunksize must be >= 1.")
        if timeout is not None:
            timeout = check_seconds("timeout", timeout) if timeout > 0 else 0.0
        deadline = None if timeout is None else time.monotonic() + timeout
        calls = list(zip(*iterables))
        if chunksize == 1:
            futures = [self._submit(fn, args) for args in calls]
        else:
            futures = [self._submit(fn, _pickling.Batch(calls[i:i + chunksize]))
                       for i in range(0, len(calls), chunksize)]
        results = _in_order(futures, deadline, chunksize > 1)
        if progress:
            results = _progress.counting(results, len(calls), "calls")
        return results

    def shutdown(self, wait=True, *, cancel_futures=False):
        """No more submits. cancel_futures: queued calls are cancelled. wait: returns once
        every future is done and the workers are gone; otherwise they go once the running
        calls are done, in the background."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            _wait_all(pending)
            self._server.destroy()
        else:
            threading.Thread(target=self._finish_later, args=(pending,), daemon=True,
                             name="ppmpi-executor-shutdown").start()

    def _finish_later(self, pending):
        _wait_all(pending)
        self._server.destroy()


def _wait_all(futures):
    # In slices so that Ctrl-C reaches a main thread waiting here.
    while futures:
        _, not_done = concurrent.futures.wait(futures, timeout=0.25)
        futures = list(not_done)


def _in_order(futures, deadline, chunked):
    """Results of `futures` in order; what is left is cancelled if the caller stops early."""
    try:
        futures.reverse()
        while futures:
            future = futures[-1]
            if deadline is None:
                result = future.result()
            else:
                result = future.result(max(0.0, deadline - time.monotonic()))
            futures.pop()
            if chunked:
                yield from result
            else:
                yield result
    finally:
        for future in futures:
            future.cancel()


__all__ = ["Executor"]
