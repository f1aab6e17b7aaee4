"""What happens when a Server's jobs complete: callbacks, futures, and the end of both when the
server is destroyed. Server (server.py) is pp's facade over it; each Job (job.py) sees it only
through job.JobOwner, and it sees a Job only through the job's side of that seam (the methods
under "for its owner" in job.py).

One thread per Server, started with the first job that needs it ("ppmpi-callbacks"), runs the
callbacks on the master one at a time in completion order and settles the futures; the C++
job table tells it which jobs completed (pool.next_notifications)."""
import logging
import threading

from ._tunables import CONTROL_TIMEOUT_S, WAIT_SLICE_S

log = logging.getLogger("ppmpi")


class Completions:
    """The owner of a Server's jobs (job.JobOwner) and its completion engine. `pool` is the
    server's C++ pool handle (_core, from Master.create_pool)."""

    def __init__(self, pool, server):
        self._pool = pool
        # A job's only path to its Server: the server stays alive while its jobs do, so that
        # at exit _runtime (which holds servers weakly) still destroys it and joins the thread.
        self._server = server
        # The job table's calls for one job, as the pool's own bound methods: Job.__call__
        # reaches the C++ table with no Python frame in between (a no-op job's round trip
        # pays for every Python call).
        self.done, self.wait, self.take = pool.done, pool.wait, pool.take
        self.take_when_done, self.forget = pool.take_when_done, pool.forget
        self.closed = False  # set once, when the server's destroy() begins
        self._ended = threading.Event()  # set once destroy()'s teardown is over
        self._lock = threading.Lock()
        self._notified = {}  # job id -> Job whose completion the notifier thread handles
        self._notifier = None

    def cancel(self, tid, running_too=True):
        """Job.cancel and its future's cancel (a remote server stops it there too)."""
        return self._pool.cancel(tid, CONTROL_TIMEOUT_S, running_too=running_too)

    def submit_notified(self, place):
        """place() submits a job with a callback and returns its Job. Both happen under the
        lock the notifier thread takes to look a finished job up: a job that finishes before
        it is registered would otherwise be dropped by the notifier, its callback never run
        and wait() never return."""
        with self._lock:
            job = place()
            self._register_locked(job)
        return job

    def watch(self, job):
        """job.future was made: settles it once the job is done. False if it cannot (the
        server is closing, or the job is done already): the outcome is at hand, and the job
        settles its future itself."""
        if self.closed:
            return False
        with self._lock:
            self._register_locked(job)
        if self._pool.watch(job.tid):
            return True
        with self._lock:
            self._notified.pop(job.tid, None)
        return False

    def _register_locked(self, job):
        """The notifier thread handles job's completion (self._lock held)."""
        self._notified[job.tid] = job
        if self._notifier is None:
            self._notifier = threading.Thread(target=self._run_notifier,
                                              name="ppmpi-callbacks", daemon=True)
            self._notifier.start()

    def _run_notifier(self):
        while True:
            with self._lock:
                if self.closed and not self._notified:
                    return
            for job_id in self._pool.next_notifications(WAIT_SLICE_S):
                self._finish_notified(job_id)

    def _finish_notified(self, job_id):
        # A call of its own: a local name in the loop above kept the last job (its result, its
        # function) for as long as this thread waited for the next one.
        with self._lock:
            job = self._notified.pop(job_id, None)
        if job is not None:
            self._finish(job)

    def _finish(self, job):
        try:
            _run_callback(job)
        except Exception:
            log.exception("ppmpi: the callback of %s raised", job.label)
        finally:
            self._settle(job, take=False)

    def _settle(self, job, take):
        """The job's callback ran or never will; its future gets the outcome (taken first if
        `take`)."""
        if job.end_callback():
            # After the job's own flag: whoever wait() releases must already see job.finished.
            self._pool.mark_notified(job.tid)
        job.settle_future(take=take)

    def close(self, stop):
        """Server.destroy(): from now on no callback runs. stop() ends the pool (its
        unfinished jobs fail with DestroyedServerError); then the completions still pending
        are settled: their callbacks are not run, their futures get the outcome. Done once; a
        later call returns when the first one is over."""
        with self._lock:
            first, self.closed = not self.closed, True
        if not first:
            # Not before the first call is over: at exit the runtime ends MPI right after
            # destroy() returns, and a teardown begun on another thread (an Executor's
            # shutdown(wait=False)) would find it gone. Not in a callback: the teardown joins
            # the thread that runs it.
            if threading.current_thread() is not self._notifier:
                self._ended.wait(CONTROL_TIMEOUT_S)
            return
        try:
            stop()
            self._settle_pending()
        finally:
            self._ended.set()

    def _settle_pending(self):
        with self._lock:
            pending = list(self._notified.values())
            self._notified.clear()
        for job in pending:
            self._settle(job, take=True)
        thread = self._notifier
        if thread is not None and thread is not threading.current_thread():
            # It notices within one wait slice; joined so no thread of ours is inside C++
            # when the interpreter finalizes.
            thread.join(timeout=5 * WAIT_SLICE_S)


def _run_callback(job):
    # A call of its own: the result is let go of as soon as the callback returns, before the
    # future (if any) is settled.
    result, error = job.take_outcome()
    if job.callback is None:
        return
    if error is not None:
        log.error("ppmpi: %s failed; its callback was not called", job.label, exc_info=error)
    else:
        job.callback(*(job.callbackargs + (result,)))
