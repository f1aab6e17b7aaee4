"""ppmpi's public names. The package's __init__ imports them after its first line, where worker
ranks and spawned workers start serving and never return; such a worker adds them to the
half-made package when first asked for (_worker_main.complete_on_demand), so a job's ``from ppmpi
import Server`` (say, in the user's module that the job's function comes from) works on every
worker."""
from ._logging import debug
from ._nested import get_executor, get_server
from ._parallel import comm, parallel
from .errors import (DestroyedServerError, JobExit, JobTimeout, NoWorkers, RemoteError,
                     RemoteTraceback, ResultPicklingError, WorkerLost)
from .executor import Executor
from .job import Job
from .server import Server, Statistics, Template

__version__ = version = "0.1.0"

__all__ = ["Server", "Template", "Job", "Statistics", "Executor", "comm", "parallel",
           "get_server", "get_executor", "debug",
           "DestroyedServerError",
           "RemoteError", "RemoteTraceback", "JobExit", "ResultPicklingError", "WorkerLost",
           "JobTimeout", "NoWorkers", "__version__"]
