"""The job object submit() returns: call it for the result (pp's ``job()``).

A Job talks to whoever ran it only through JobOwner (the Server's _completions.Completions),
and its owner talks to it only through the methods under "for its owner" below."""
import concurrent.futures
import pickle
import sys
import threading
import typing
from concurrent.futures._base import CANCELLED, FINISHED

from . import _parallel, _serialize
from ._tunables import SETTLE_WAIT_S, WAIT_SLICE_S


class JobOwner(typing.Protocol):
    """All a Job (and its future) asks of whoever ran it (_completions.Completions), by job id.
    The first five are the job table's calls for one job: the owner hands out the C++ pool's
    own methods, so that a job's wait and take run no Python between the job and the table."""

    closed: bool  # the server is being destroyed: nothing can be cancelled or watched any more

    def done(self, tid) -> bool:
        """Whether the outcome is in (not taken yet)."""

    def wait(self, tid, seconds) -> bool:
        """Whether the outcome is in within `seconds`."""

    def take(self, tid):
        """The outcome of a job that is done, moved out of the table."""

    def take_when_done(self, tid, seconds):
        """take(), once the outcome is in within `seconds`; else None."""

    def forget(self, tid) -> None:
        """Nobody will take the outcome: the table drops it when it comes."""

    def cancel(self, tid, running_too) -> bool:
        """Cancels a queued job (running_too: a running one too, its worker replaced)."""

    def watch(self, job) -> bool:
        """job.future was made: settle it once the job is done. False: the owner cannot
        (the job is done already, or the server is closing); the job settles it itself."""


class Job:
    """A submitted job. ``job()`` blocks until the result is in and returns it (or re-raises
    the job's exception, with the worker's traceback as its ``__cause__``); what the job
    printed is shown on the master's stdout the first time the result is taken."""

    __slots__ = ("_owner", "tid", "group", "_func", "callback", "callbackargs", "_lock",
                 "_taken", "_result", "_error", "_callback_done", "_future", "_nranks",
                 "_owned", "__weakref__")

    def __init__(self, owner, tid, func, group, callback, callbackargs, nranks=None):
        self._owner = owner  # a JobOwner
        self.tid = tid
        self.group = group
        self._func = func  # its name is looked up only if a message needs it
        self.callback = callback
        self.callbackargs = callbackargs
        self._lock = threading.Lock()
        self._taken = False
        self._result = None
        self._error = None
        self._callback_done = threading.Event() if callback is not None else None
        self._future = None
        self._nranks = nranks  # a parallel job's: its result is a list
        self._owned = False  # an Executor's: its future is all anyone sees of it

    def __repr__(self):
        state = "finished" if self.finished else "pending"
        return f"<ppmpi.Job {self.tid} {_serialize.describe(self._func)} {state}>"

    @property
    def label(self):
        return f"job {self.tid} ({_serialize.describe(self._func)})"

    @property
    def finished(self):
        """True once the result is in (and, for a job with a callback, the callback ran)."""
        if self._callback_done is not None:
            return self._callback_done.is_set()
        return self._taken or self._owner.done(self.tid)

    def wait(self, timeout=None):
        """Waits for the job to finish; returns whether it did within ``timeout`` seconds."""
        if self._callback_done is not None:
            return self._wait_event(self._callback_done, timeout)
        if self._taken:
            return True
        wait = self._owner.wait
        if timeout is not None:
            return wait(self.tid, max(0.0, float(timeout)))
        while not wait(self.tid, WAIT_SLICE_S):
            pass
        return True

    @staticmethod
    def _wait_event(event, timeout):
        if timeout is not None:
            return event.wait(timeout)
        while not event.wait(WAIT_SLICE_S):
            pass
        return True

    def cancel(self):
        """Cancels the job if it has not finished: a queued job never runs; a running job's
        worker is stopped and replaced. Returns True if cancelled; job() then raises
        concurrent.futures.CancelledError."""
        if self._taken or self._owner.closed:
            return False
        return self._owner.cancel(self.tid, running_too=True)

    @property
    def future(self):
        """This job as a concurrent.futures.Future (made on first use): it works with
        concurrent.futures.wait and as_completed, and completes once the job is finished
        (after its callback, if it has one). Its cancel() cancels the job only while it is
        queued, as a standard future's does; Job.cancel() also stops a running job."""
        with self._lock:
            future, made = self._future, False
            if future is None:
                future = self._future = _JobFuture(self)
                made = True
        # A callback's completion settles the future already.
        if made and self.callback is None:
            if self._taken or not self._owner.watch(self):
                self.settle_future(take=True)
        return future

    def hand_over(self):
        """Returns this job's future, which becomes all that anyone sees of the job (an
        Executor's call): once the future is settled the job keeps neither it nor the
        outcome."""
        self._owned = True
        return self.future

    def __call__(self, raw_result=False):
        if self._callback_done is None and not self._taken:
            # Without a callback one C++ call waits and takes (in slices, for Ctrl-C); inline,
            # since a no-op job's round trip pays for every Python call on this path.
            take, output = self._owner.take_when_done, None
            with self._lock:
                while not self._taken:
                    outcome = take(self.tid, WAIT_SLICE_S)
                    if outcome is not None:
                        output = self._apply(outcome)
                        break
            if output:
                sys.stdout.write(output)
                sys.stdout.flush()
        else:
            self.wait()
            self._take()
        if raw_result:
            return pickle.dumps(self._result)
        if self._error is not None:
            raise self._error
        return self._result

    def _take(self):
        """Moves the outcome from the C++ job table into this object, once."""
        with self._lock:
            if self._taken:
                return
            output = self._apply(self._owner.take(self.tid))
        if output:
            sys.stdout.write(output)
            sys.stdout.flush()

    def _apply(self, outcome):
        """Unpickles a taken outcome into this job; returns the job's printed output."""
        code, payload, message, _worker, _seconds, buffers = outcome
        if self._nranks is not None and code in (_serialize.OK, _serialize.REMOTE_ERROR):
            self._result, self._error, output = _parallel.unpack(payload, buffers, self.label)
        elif code == _serialize.OK:
            # Large arrays come back as views of the memory they were received into.
            self._result, output = (pickle.loads(payload, buffers=buffers) if buffers
                                    else pickle.loads(payload))
        elif code == _serialize.REMOTE_ERROR:
            report, output = pickle.loads(payload)
            self._error = _serialize.rebuild_error(report, self.label)
        else:
            output = ""
            self._error = _serialize.outcome_error(code, message, self.label)
        self._taken = True
        return output

    def __del__(self):
        # A job nobody will ask about again: let the job table drop its result when it comes.
        try:
            if not self._taken:
                self._owner.forget(self.tid)
        except Exception:
            pass

    # -- for its owner (JobOwner): the job's side of the seam --------------------------------
    def take_outcome(self):
        """(result, error), taken from the job table into this job first if it was not yet
        (its printed output is shown then)."""
        self._take()
        return self._result, self._error

    def end_callback(self):
        """The job's callback ran, or never will: finished turns True and wait() returns.
        Returns whether the job has a callback, whose entry the owner then marks notified in
        the job table (after this: whoever the table releases must already see finished)."""
        done = self._callback_done
        if done is None:
            return False
        done.set()
        return True

    def settle_future(self, take=False):
        """Passes the outcome to the future, if there is one and it is open, once; take: the
        outcome is taken first (else it was taken already). Then nothing of ppmpi refers to
        the future or its outcome any more: the future lets go of this job; an Executor's job
        (whose future is the only reader of its outcome) lets go of the outcome and the
        future; and only then may the future's result() and exception() return
        (_JobFuture._settled), so that a caller who drops the future and its result frees them
        at once (CPython's test_free_reference)."""
        if take and self._future is not None:
            self._take()
        future = self._future
        if future is None or future._job is None:
            return  # no future, or resolved already
        result, error = self._result, self._error
        if self._owned:
            self._result = self._error = self._future = None
        future._resolver = threading.get_ident()  # its done-callbacks run here, and need no wait
        try:
            if future.done():
                pass
            elif isinstance(error, concurrent.futures.CancelledError):
                future._cancel_now()
            elif error is not None:
                future.set_exception(error)
            else:
                future.set_result(result)
        except concurrent.futures.InvalidStateError:
            pass  # cancelled meanwhile by its owner
        finally:
            # No cycle job <-> future left behind either: both go as soon as their owner drops
            # them, without waiting for the cyclic garbage collector (CPython's
            # test_no_stale_references waits without collecting).
            future._job = None
            settling = future._settling
            del future, result, error
            settling.release()


class _JobFuture(concurrent.futures.Future):
    """The future of one Job. It stays pending until the outcome is in (ppmpi does not report
    when a queued job starts), so cancel() asks the dispatcher, which cancels only a job that
    is still queued."""

    def __init__(self, job):
        super().__init__()
        self._job = job
        # Held until the job let go of this future (Job.settle_future): the thread that
        # completes a future holds it (and its result) for a few more steps after waking its
        # waiters, and result() and exception() return only after those.
        self._settling = threading.Lock()
        self._settling.acquire()
        self._resolver = None  # the thread completing it

    def _settled(self):
        if (self._state == FINISHED and self._resolver != threading.get_ident()
                and self._settling.acquire(timeout=SETTLE_WAIT_S)):
            self._settling.release()

    def result(self, timeout=None):
        try:
            return super().result(timeout)
        finally:
            self._settled()

    def exception(self, timeout=None):
        try:
            return super().exception(timeout)
        finally:
            self._settled()

    def cancel(self):
        job = self._job
        if job is None or self.done():  # done (the job is let go of only after that)
            return super().cancel()  # True if cancelled already, else False
        if job._taken or job._owner.closed:
            return False
        try:
            cancelled = job._owner.cancel(job.tid, running_too=False)
        except Exception:
            return False
        if cancelled:
            self._cancel_now()
        return cancelled or self.cancelled()

    def _cancel_now(self):
        # Waiters (concurrent.futures.wait, as_completed) see a cancelled future only once it
        # is CANCELLED_AND_NOTIFIED, which set_running_or_notify_cancel does after cancel().
        # Checked under the future's lock: the owner's cancel() and the notifier may both get
        # here, and notifying twice logs a CRITICAL "in unexpected state".
        if super().cancel():
            with self._condition:
                if self._state == CANCELLED:
                    self.set_running_or_notify_cancel()
