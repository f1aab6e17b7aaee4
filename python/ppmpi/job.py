"""The job object submit() returns: call it for the result (pp's ``job()``)."""
import pickle
import sys
import threading

from . import _serialize

# Waits happen in slices so that Ctrl-C reaches the driver within one slice.
WAIT_SLICE_S = 0.25


class Job:
    """A submitted job. ``job()`` blocks until the result is in and returns it (or re-raises
    the job's exception, with the worker's traceback as its ``__cause__``); what the job
    printed is shown on the master's stdout the first time the result is taken."""

    __slots__ = ("_server", "tid", "group", "_name", "callback", "callbackargs", "_lock",
                 "_taken", "_result", "_error", "_callback_done", "__weakref__")

    def __init__(self, server, tid, name, group, callback, callbackargs):
        self._server = server
        self.tid = tid
        self.group = group
        self._name = name
        self.callback = callback
        self.callbackargs = callbackargs
        self._lock = threading.Lock()
        self._taken = False
        self._result = None
        self._error = None
        self._callback_done = threading.Event() if callback is not None else None

    def __repr__(self):
        state = "finished" if self.finished else "pending"
        return f"<ppmpi.Job {self.tid} {self._name} {state}>"

    @property
    def label(self):
        return f"job {self.tid} ({self._name})"

    @property
    def finished(self):
        """True once the result is in (and, for a job with a callback, the callback ran)."""
        if self._callback_done is not None:
            return self._callback_done.is_set()
        return self._taken or self._server._pool.done(self.tid)

    def wait(self, timeout=None):
        """Waits for the job to finish; returns whether it did within ``timeout`` seconds."""
        if self._callback_done is not None:
            return self._wait_event(self._callback_done, timeout)
        if self._taken:
            return True
        pool = self._server._pool
        if timeout is not None:
            return pool.wait(self.tid, max(0.0, float(timeout)))
        while not pool.wait(self.tid, WAIT_SLICE_S):
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
        if self._taken or self._server._destroyed:
            return False
        from .server import CONTROL_TIMEOUT_S

        return self._server._pool.cancel(self.tid, CONTROL_TIMEOUT_S)

    def __call__(self, raw_result=False):
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
            outcome = self._server._pool.take(self.tid)
            code, payload, message, worker, _seconds = outcome
            if code == _serialize.OK:
                self._result, output = pickle.loads(payload)
            elif code == _serialize.REMOTE_ERROR:
                report, output = pickle.loads(payload)
                self._error = _serialize.rebuild_error(report, self.label)
            else:
                output = ""
                self._error = _serialize.outcome_error(code, message, self.label)
            self._taken = True
        if output:
            sys.stdout.write(output)
            sys.stdout.flush()

    def __del__(self):
        # A job nobody will ask about again: let the job table drop its result when it comes.
        try:
            if not self._taken:
                self._server._pool.forget(self.tid)
        except Exception:
            pass
