"""A concurrent.futures face on ppmpi's engine: ``ppmpi.Executor`` is to ppmpi what
ProcessPoolExecutor is to multiprocessing, and mpi4py.futures.MPIPoolExecutor to mpi4py.

    with ppmpi.Executor() as ex:
        squares = list(ex.map(pow, range(10**5), [2] * 10**5, chunksize=1000))
        future = ex.submit(sorted, data, reverse=True)

Its futures are concurrent.futures.Future objects, so concurrent.futures.wait and
as_completed work on them (and on pp jobs' ``job.future``).

Nothing of a call is kept once its future is done and dropped: neither the function, nor the
arguments, nor the result (map's results are let go of as they are yielded). At interpreter
exit, as with the standard executors, the calls submitted still run to the end (those of an
executor shut down with wait=False too) before ppmpi stops its workers."""
import atexit
import concurrent.futures
import logging
import threading
import time
import uuid
import weakref

from . import _parallel, _pickling, _progress
from ._checks import check_seconds
from .errors import InitializerError
from .server import Server

# The logger the standard executors report a failed initializer to.
_futures_log = logging.getLogger("concurrent.futures")
_live = weakref.WeakSet()  # executors whose calls interpreter exit waits for
_live_lock = threading.Lock()
_exiting = False
_exit_hook = False


class _Initializer:
    """(key, initializer, initargs): the bundle carries it as a plain tuple, which the workers
    read; an object of its own so that the master's bundle cache can hold it weakly (a tuple,
    even a subclass of tuple, cannot be weakly referenced)."""

    __slots__ = ("_spec", "__weakref__")

    def __init__(self, key, initializer, initargs):
        self._spec = (key, initializer, initargs)

    def __iter__(self):
        return iter(self._spec)

    def __getitem__(self, index):
        return self._spec[index]


class Executor(concurrent.futures.Executor):
    """``Executor(max_workers=None, *, initializer=None, initargs=(), worker_timeout=5.0,
    max_retries=3, job_timeout=None)``: max_workers workers (default: the worker ranks of an
    mpirun world, else the CPUs online), started at once. initializer(*initargs) runs once in
    each worker process before its first task of this executor; if it raises, the task fails
    with BrokenExecutor (ppmpi.errors.InitializerError), the error is logged as the standard
    executors do (logger "concurrent.futures", CRITICAL), and the executor is broken: submit()
    raises BrokenExecutor from then on. The keyword-only options are Server's (dead and hung
    workers)."""

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
        self._init = _Initializer(uuid.uuid4().hex, initializer, initargs) if initializer \
            else None
        self._lock = threading.Lock()
        self._shutdown = False
        self._broken = False  # why, once an initializer raised (the name ProcessPool uses)
        self._failed_init = None
        self._pending = set()
        _watch_at_exit(self)

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
            fn, nranks = fn.fn, fn.nranks  # checked by Server._submit
        with self._lock:
            if self._broken:
                raise concurrent.futures.BrokenExecutor(self._broken)
            if self._shutdown or self._server.destroyed:
                raise RuntimeError("cannot schedule new futures after interpreter shutdown"
                                   if _exiting else "cannot schedule new futures after shutdown")
            # Its future is all the caller gets: the job keeps nothing more.
            future = self._server._submit(fn, payload, init=self._init, nranks=nranks).hand_over()
            self._pending.add(future)
        future.add_done_callback(self._done)
        return future

    def _done(self, future):
        with self._lock:
            self._pending.discard(future)
        if self._init is not None and not future.cancelled():
            error = concurrent.futures.Future.exception(future, 0)  # done: at once
            if isinstance(error, InitializerError):
                self._break(error)

    def _break(self, error):
        """An initializer raised: logged once, then no more submits (as ProcessPoolExecutor).
        The calls already submitted go on: on a worker whose initializer raised they fail the
        same way."""
        with self._lock:
            if self._failed_init is not None:
                return
            self._failed_init = error
        # Logged before _broken is set: whoever sees the executor broken finds the log written.
        _futures_log.critical("Exception in initializer:", exc_info=error)
        with self._lock:
            self._broken = ("A worker's initializer raised, the executor is now unusable: "
                            f"{error}")

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

    def _exit(self):
        """At interpreter exit: no more submits; the calls submitted run to the end."""
        with self._lock:
            self._shutdown = True
            pending = list(self._pending)
        _wait_all(pending)
        self._server.destroy()


def _watch_at_exit(executor):
    """Registers the exit hook once, after ppmpi's own (the Executor's Server registered that
    one): hooks run last-registered first, so the executors' calls end before the workers."""
    global _exit_hook
    with _live_lock:
        _live.add(executor)
        if not _exit_hook:
            atexit.register(_at_exit)
            _exit_hook = True


def _at_exit():
    global _exiting
    _exiting = True
    for executor in list(_live):
        try:
            executor._exit()
        except Exception as exc:  # the other executors and ppmpi's shutdown must still run
            logging.getLogger("ppmpi").warning("ppmpi: an Executor at exit: %s", exc)


def _wait_all(futures):
    # In slices so that Ctrl-C reaches a main thread waiting here.
    while futures:
        _, not_done = concurrent.futures.wait(futures, timeout=0.25)
        futures = list(not_done)


def _result_or_cancel(future, timeout):
    try:
        try:
            return future.result(timeout)
        finally:
            future.cancel()  # still pending: timed out (a no-op on a done future)
    finally:
        del future  # not kept by the traceback of the job's exception


def _in_order(futures, deadline, chunked):
    """Results of `futures` in order; what is left is cancelled if the caller stops early.
    No name here refers to a future or a result across a yield: each future is popped before
    it is waited for, and a result is let go of as soon as it is yielded (the caller may
    drop it at once; CPython's test_free_reference)."""
    try:
        futures.reverse()
        while futures:
            timeout = None if deadline is None else max(0.0, deadline - time.monotonic())
            if chunked:
                results = _result_or_cancel(futures.pop(), timeout)
                results.reverse()
                while results:
                    yield results.pop()
            else:
                yield _result_or_cancel(futures.pop(), timeout)
    finally:
        for future in futures:
            future.cancel()


__all__ = ["Executor"]
