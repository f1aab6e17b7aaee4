"""ppmpi's exceptions. DestroyedServerError is a RuntimeError, as in pp."""
from concurrent.futures import BrokenExecutor


class DestroyedServerError(RuntimeError):
    """The server was destroyed: no more submits, and unfinished jobs fail with this."""


class RemoteTraceback(Exception):
    """Attached as ``__cause__`` of an exception re-raised by ``job()``: the worker's traceback,
    headed by the job, rank and host it came from."""

    def __init__(self, text):
        super().__init__(text)
        self.text = text

    def __str__(self):
        return self.text


class RemoteError(RuntimeError):
    """A job raised an exception that could not be pickled back; this carries its type name
    and message instead."""


class JobExit(RuntimeError):
    """A job called sys.exit() (or raised SystemExit / KeyboardInterrupt) on its worker."""


class ResultPicklingError(TypeError):
    """A job's result could not be pickled on its worker to travel back to the master."""


class WorkerLost(RuntimeError):
    """The worker running the job died or hung."""


class JobTimeout(RuntimeError):
    """The job ran longer than its time limit."""


class NoWorkers(RuntimeError):
    """The server lost every worker and could not start new ones (the message says how);
    ``set_ncpus(n)`` starts new workers, and jobs submitted after that run."""


class InitializerError(BrokenExecutor):
    """An Executor's initializer raised on a worker: the call that needed it fails with this,
    and the Executor is broken from then on (as a ProcessPoolExecutor whose initializer
    raised)."""
