"""Nested jobs: a job running on a worker submits jobs (``ppmpi.get_server()``,
``ppmpi.get_executor()``) and waits for them. The worker loop carries them (protocol step 8 in
include/ppmpi/core/protocol.hpp); why waiting cannot deadlock: include/ppmpi/core/children.hpp.
A waiting job runs, on its own thread, the children the master hands back to it, each with its
own captured output; a child's output joins its parent's where the parent takes the result."""
import concurrent.futures
import pickle
import sys
import time

from . import _pickling, _serialize
from ._checks import check_submit

stack = []  # the jobs running on this worker's job thread, innermost last (inline children)
_submit = _wait = None  # the worker loop's, from PythonJobRunner::host_functions
_runtime = None  # this worker's WorkerRuntime: it runs inline the children made here
WAIT_SLICE_S = 1.0  # a wait is many bounded waits: the job's timeout (its worker's) bounds all
PRUNE_MIN = 64  # a NestedServer lets go of its finished children once it has this many or more
OK, ERROR, FAILED = 0, 1, 4  # ResultStatus (protocol.hpp)
FRAMES_PER_WAIT = 16  # Python frames between a job's wait and the child it runs inline
NOT_IN_A_JOB = ("ppmpi.{0}() works only inside a job running on a ppmpi worker; on the driver, "
                "submit to the ppmpi.Server (or use the ppmpi.Executor) you made")


def attach(host, runtime):
    """The worker loop's (submit, wait), or None (no worker loop: a warm-up runtime)."""
    global _submit, _wait, _runtime
    if host is not None:
        (_submit, _wait), _runtime = host, runtime


def _current(name):
    if not stack or _submit is None:
        raise RuntimeError(NOT_IN_A_JOB.format(name))
    return stack[-1]


def get_server():
    """Inside a job: a server whose submit() (Server.submit's signature and checks) runs jobs on
    the same pool, children of this job."""
    return NestedServer(_current("get_server"))


def get_executor():
    """Inside a job: the same as a concurrent.futures.Executor."""
    return NestedExecutor(_current("get_executor"))


def run_inline(runtime, run, *args):
    """A child run inside its parent's wait, on the parent's thread: its own output, and the
    frames of the wait between them not counted against its recursion limit."""
    capture = runtime._capture
    outer = capture.buffer
    capture.buffer = type(outer)()
    stack.append(args[0])
    limit = sys.getrecursionlimit()
    sys.setrecursionlimit(limit + FRAMES_PER_WAIT)
    try:
        return run(*args)
    finally:
        sys.setrecursionlimit(limit)
        stack.pop()
        capture.buffer = outer


class NestedServer:
    """What ppmpi.get_server() returns: submits children of the job that asked for it."""

    def __init__(self, parent):
        self._parent = parent
        self._jobs = []  # for wait(): the finished ones are let go of now and then
        self._prune_at = PRUNE_MIN

    def submit(self, func, args=(), depfuncs=(), modules=(), callback=None, callbackargs=(),
               group="default", globals=None, *, timeout=None, nranks=None):
        modules, depfuncs, timeout = check_submit(args, depfuncs, modules, callback,
                                                  callbackargs, globals, timeout)
        if nranks is not None:
            raise ValueError("a job cannot submit parallel jobs (nranks) yet: submit them from "
                             "the driver")
        return self._submit(func, args, depfuncs, modules, callback, callbackargs, timeout)

    def _submit(self, func, payload, depfuncs=(), modules=(), callback=None, callbackargs=(),
                timeout=None):
        if not callable(func):
            raise TypeError(f"func must be callable, not {type(func).__name__}")
        protocol = pickle.HIGHEST_PROTOCOL
        key, bundle = _serialize.dump_bundle(func, depfuncs, modules, False, protocol)
        data, buffers = _serialize.dump_args(func, payload, protocol)
        if key not in _runtime.bundles:  # the master sends it to other workers, not back here
            _runtime.define(key, bundle)
        tid = _submit(self._parent, key, bundle, data, buffers, timeout or 0.0)
        job = NestedJob(tid, self._parent, func, callback, callbackargs)
        jobs = self._jobs
        if len(jobs) >= self._prune_at:
            # A long job submitting many children must not keep every result it took.
            jobs[:] = [j for j in jobs if not j._done]
            self._prune_at = max(PRUNE_MIN, 2 * len(jobs))
        jobs.append(job)
        return job

    def wait(self, group=None):
        """Waits for every job submitted through this server (pp's wait)."""
        for job in self._jobs:
            job.wait()


class NestedJob:
    """A child job: ``job()`` waits (running children here meanwhile) and returns its result or
    raises its exception; ``wait(timeout)``, ``finished`` and ``future`` as a Job's."""

    __slots__ = ("tid", "_parent", "_func", "callback", "callbackargs", "_done", "_result",
                 "_error", "_future")

    def __init__(self, tid, parent, func, callback, callbackargs):
        self.tid, self._parent, self._func = tid, parent, func
        self.callback, self.callbackargs = callback, callbackargs
        self._done, self._result, self._error, self._future = False, None, None, None

    @property
    def label(self):
        return f"child job {self.tid & 0xffffffff} ({_serialize.describe(self._func)})"

    def __repr__(self):
        return f"<ppmpi child {self.label} {'finished' if self._done else 'pending'}>"

    def __reduce__(self):
        raise TypeError(f"{self.label} cannot be sent to another job or to the driver: wait for "
                        f"it in the job that submitted it")

    def __call__(self):
        self.wait()
        if self._error is not None:
            raise self._error
        return self._result

    @property
    def finished(self):
        return self._done or self._take(0.0)

    def wait(self, timeout=None):
        """True once the job finished; False if `timeout` s passed first."""
        if self._parent not in stack:
            raise RuntimeError(f"{self.label} was submitted by job {self._parent}, which is not "
                               f"running here: a job may wait only for jobs it (or a job it "
                               f"waits in) submitted")
        if self._done:
            return True
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = WAIT_SLICE_S if deadline is None else deadline - time.monotonic()
            if self._take(max(min(left, WAIT_SLICE_S), 1e-6)):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False

    @property
    def future(self):
        if self._future is None:
            self._future = _ChildFuture(self)
        return self._future

    def _take(self, timeout):
        outcome = _wait(self.tid, timeout)
        if outcome is None:
            return False
        status, payload, code, buffers = outcome
        output = ""
        if status == OK:
            self._result, output = (pickle.loads(payload, buffers=buffers) if buffers
                                    else pickle.loads(payload))
        elif status == ERROR:
            report, output = pickle.loads(payload)
            self._error = _serialize.rebuild_error(report, self.label)
        else:
            self._error = _serialize.outcome_error(code, payload.decode(errors="replace"),
                                                   self.label)
        self._done = True
        if output:
            sys.stdout.write(output)
        if self._error is None and self.callback is not None:
            self.callback(*self.callbackargs, self._result)
        return True


class _ChildFuture(concurrent.futures.Future):
    """A child's future, settled when asked (no thread on a worker settles it): result(),
    exception() and done() work; concurrent.futures.wait/as_completed do not, on a worker."""

    def __init__(self, job):
        super().__init__()
        self._job = job

    def _settle(self, timeout):
        if super().done():
            return
        job = self._job
        if not job.wait(timeout):
            raise concurrent.futures.TimeoutError()
        if job._error is not None:
            self.set_exception(job._error)
        else:
            self.set_result(job._result)
        self._job = None  # settled: no job <-> future cycle left behind

    def done(self):
        if not super().done() and self._job.finished:
            self._settle(0)
        return super().done()

    def result(self, timeout=None):
        self._settle(timeout)
        return super().result(0)

    def exception(self, timeout=None):
        self._settle(timeout)
        return super().exception(0)


class NestedExecutor(concurrent.futures.Executor):
    """What ppmpi.get_executor() returns: an Executor of children of the job that asked."""

    def __init__(self, parent):
        self._server = NestedServer(parent)

    def submit(self, fn, /, *args, **kwargs):
        payload = _pickling.KwCall(args, kwargs) if kwargs else args
        return self._server._submit(fn, payload).future

    def shutdown(self, wait=True, *, cancel_futures=False):
        if wait:
            self._server.wait()
