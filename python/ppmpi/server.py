"""pp's Server, on MPI ranks (see ../shared/docs/pp-reference.md for pp's own semantics)."""
import logging
import os
import sys
import threading
import time
import types

from . import _launch, _runtime, _serialize
from .errors import DestroyedServerError
from .job import WAIT_SLICE_S, Job

log = logging.getLogger("ppmpi")

CREATE_TIMEOUT_S = 60.0  # spawning workers: ~0.25 s per MPI_Comm_spawn, far less than this
CONTROL_TIMEOUT_S = 120.0


_SPAWN_HINT = (" (if this is under mpirun after workers were killed: Open MPI's MPI_Comm_spawn "
               "can block forever there; see README 'Dead and hung workers')")


class Statistics:
    """One row of get_stats(): pp's _Statistics."""

    def __init__(self, ncpus, njobs=0, time=0.0, rworker=None):
        self.ncpus, self.njobs, self.time, self.rworker = ncpus, njobs, time, rworker

    def __repr__(self):
        return f"Statistics(ncpus={self.ncpus}, njobs={self.njobs}, time={self.time:.6f})"


def _check_ncpus(ncpus):
    if ncpus == "autodetect":
        return None
    if isinstance(ncpus, bool) or not isinstance(ncpus, int):
        raise TypeError(f"ncpus must be an int or 'autodetect', not {type(ncpus).__name__}")
    if ncpus < 0:
        raise ValueError(f"ncpus must be >= 0, got {ncpus}")
    return ncpus


def _check_seconds(name, value, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return float(value)


def _check_retries(max_retries):
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int, not {type(max_retries).__name__}")
    if max_retries < 1:
        raise ValueError(f"max_retries must be >= 1, got {max_retries}")
    return max_retries


def _check_proto(proto):
    if proto is None:
        return _serialize.DEFAULT_PROTOCOL
    if isinstance(proto, bool) or not isinstance(proto, int) or not 0 <= proto <= 5:
        raise ValueError(f"proto must be a pickle protocol from 0 to 5, got {proto!r}")
    return max(proto, 2)  # cloudpickle needs protocol 2 or later


def _check_tuple(name, value):
    if not isinstance(value, tuple):
        raise TypeError(f"{name} argument must be a tuple, not {type(value).__name__}")


def _from_globals(namespace, modules, depfuncs):
    """pp's globals=: every module and plain function found in the dict is shipped."""
    found_modules = [v.__name__ for k, v in namespace.items()
                     if isinstance(v, types.ModuleType) and k != "__builtins__"
                     and v.__name__ not in ("ppmpi", "pp") and not v.__name__.startswith("ppmpi.")]
    found_funcs = [v for v in namespace.values() if isinstance(v, types.FunctionType)]
    return (modules + tuple(m for m in found_modules if m not in modules),
            depfuncs + tuple(f for f in found_funcs if f not in depfuncs))


class Server:
    """A pp job server whose workers are MPI ranks.

    ``Server(ncpus="autodetect", ppservers=(), secret=None, restart=False, proto=None,
    socket_timeout=3600, *, worker_timeout=5.0, max_retries=3, job_timeout=None)``: ncpus
    workers (autodetect: the worker ranks of an mpirun world, else the CPUs online). Alone,
    workers are spawned (ppmpi-worker); under mpirun, ranks 1..N-1 serve first and more are
    spawned if ncpus asks for more.

    worker_timeout: a worker silent this long is lost (workers send heartbeats every 0.5 s from
    a thread of their own, even during a long job); its jobs run again elsewhere. Shorter finds
    a hung worker sooner; too short declares a CPU-starved worker lost and re-runs its jobs.
    max_retries: a job running on a worker when it was lost this many times fails with
    WorkerLost instead of taking down more workers. job_timeout: default limit in seconds for
    each job (submit's timeout= overrides); an over-time job fails with JobTimeout and its
    worker is replaced."""

    default_port = 60000
    default_secret = "epo20pdosl;dksldkmm"

    def __init__(self, ncpus="autodetect", ppservers=(), secret=None, restart=False, proto=None,
                 socket_timeout=3600, *, worker_timeout=5.0, max_retries=3, job_timeout=None):
        _check_tuple("ppservers", ppservers)
        if ppservers:
            raise NotImplementedError(
                "ppservers (remote pp nodes) are not supported yet; start workers on other "
                "hosts with mpirun --hostfile instead (README 'Launch modes')")
        if secret is not None:
            if not isinstance(secret, str):
                raise TypeError(f"secret must be a str, not {type(secret).__name__}")
            raise NotImplementedError("secret= (pp's network authentication) is not supported "
                                      "yet: ppmpi has no network servers to authenticate")
        wanted = _check_ncpus(ncpus)
        self.worker_timeout = _check_seconds("worker_timeout", worker_timeout, False)
        self.max_retries = _check_retries(max_retries)
        self.job_timeout = _check_seconds("job_timeout", job_timeout)
        self.proto = _check_proto(proto)
        self.restart = bool(restart)
        self.socket_timeout = socket_timeout
        self.ppservers, self.secret = ppservers, secret
        if wanted is None:
            wanted = _runtime.world_workers() or _launch.detect_ncpus()
        self._created = time.time()
        self._destroyed = False
        self._lock = threading.Lock()
        self._groups = {}
        self._callback_jobs = {}
        self._callback_thread = None
        self._ncpus = wanted
        try:
            self._pool = _runtime.master().create_pool(wanted, 1, list(sys.path), os.getcwd(),
                                                       self.worker_timeout, self.max_retries,
                                                       CREATE_TIMEOUT_S)
        except RuntimeError as exc:
            raise RuntimeError(f"ppmpi could not start {wanted} workers: {exc}{_SPAWN_HINT}") from exc
        _runtime.register(self)

    # -- submitting -------------------------------------------------------------------------
    def submit(self, func, args=(), depfuncs=(), modules=(), callback=None, callbackargs=(),
               group="default", globals=None, *, timeout=None):
        """Submits ``func(*args)``; returns a Job. depfuncs are callable by name on the worker
        and modules are imported there first (``"math"`` or ``"from x import y"``).
        timeout: seconds the job may run (default: the server's job_timeout); past it the job
        fails with JobTimeout and its worker is replaced."""
        if self._destroyed:
            raise DestroyedServerError("Cannot submit jobs: server instance has been destroyed")
        if not callable(func):
            raise TypeError(f"func must be callable, not {type(func).__name__}")
        for name, value in (("args", args), ("depfuncs", depfuncs), ("modules", modules),
                            ("callbackargs", callbackargs)):
            _check_tuple(name, value)
        for module in modules:
            if not isinstance(module, str):
                raise TypeError(f"modules entries must be str, not {type(module).__name__}")
        if callback is not None and not callable(callback):
            raise TypeError(f"callback must be callable, not {type(callback).__name__}")
        timeout = _check_seconds("timeout", timeout)
        if timeout is None:
            timeout = self.job_timeout
        if globals is not None:
            if not isinstance(globals, dict):
                raise TypeError(f"globals must be a dict, not {type(globals).__name__}")
            modules, depfuncs = _from_globals(globals, modules, depfuncs)
        if self._ncpus == 0:
            log.warning("ppmpi: this server has no workers (ncpus=0); the job waits until "
                        "set_ncpus(n) with n > 0")
        key, bundle = _serialize.dump_bundle(func, depfuncs, modules, self.restart, self.proto)
        data = _serialize.dump_args(func, args, self.proto)
        _serialize.check_size(f"the arguments of {_serialize.describe(func)}()", data)
        _serialize.check_size(f"the function {_serialize.describe(func)!r}", bundle)
        job_id = self._pool.submit(key, bundle, data, self._group_id(group), callback is not None,
                                   timeout or 0.0)
        job = Job(self, job_id, _serialize.describe(func), group, callback, callbackargs)
        if callback is not None:
            with self._lock:
                self._callback_jobs[job_id] = job
                self._start_callback_thread()
        return job

    def _group_id(self, group):
        with self._lock:
            return self._groups.setdefault(group, len(self._groups))

    # -- callbacks --------------------------------------------------------------------------
    def _start_callback_thread(self):
        if self._callback_thread is None:
            self._callback_thread = threading.Thread(target=self._run_callbacks,
                                                     name="ppmpi-callbacks", daemon=True)
            self._callback_thread.start()

    def _run_callbacks(self):
        """Runs callbacks on the master, one at a time, in completion order."""
        while True:
            with self._lock:
                if self._destroyed and not self._callback_jobs:
                    return
            for job_id in self._pool.next_notifications(WAIT_SLICE_S):
                with self._lock:
                    job = self._callback_jobs.pop(job_id, None)
                if job is not None:
                    self._finish_callback_job(job)

    def _finish_callback_job(self, job):
        try:
            job._take()
            if job._error is not None:
                log.error("ppmpi: %s failed; its callback was not called", job.label,
                          exc_info=job._error)
            else:
                job.callback(*(job.callbackargs + (job._result,)))
        except Exception:
            log.exception("ppmpi: the callback of %s raised", job.label)
        finally:
            # In this order: whoever wait() releases must already see job.finished.
            job._callback_done.set()
            self._pool.mark_notified(job.tid)

    # -- waiting and control ----------------------------------------------------------------
    def wait(self, group=None):
        """Waits for every job (of ``group``, if given) to finish."""
        if group is None:
            gid = -1
        else:
            with self._lock:
                gid = self._groups.get(group)
            if gid is None:
                return
        while not self._pool.wait_group(gid, WAIT_SLICE_S):
            pass

    def get_ncpus(self):
        """The number of workers serving this server now."""
        if self._destroyed:
            return 0
        return self._pool.size(CONTROL_TIMEOUT_S)

    def set_ncpus(self, ncpus="autodetect"):
        """Grows (spawning workers) or shrinks (retiring idle workers) the pool."""
        wanted = _check_ncpus(ncpus)
        if wanted is None:
            wanted = _launch.detect_ncpus()
        if self._destroyed:
            raise DestroyedServerError("Cannot set ncpus: server instance has been destroyed")
        try:
            self._pool.resize(wanted, CREATE_TIMEOUT_S)
        except RuntimeError as exc:
            raise RuntimeError(f"ppmpi could not resize to {wanted} workers: {exc}{_SPAWN_HINT}") from exc
        self._ncpus = wanted

    def get_active_nodes(self):
        """{"local": workers on this host, "<host>": workers on each other host}."""
        import socket

        here = socket.gethostname()
        nodes = {"local": 0}
        for label, _jobs, _seconds in self._stats()["per_worker"]:
            host = label.rsplit(":", 1)[0]
            key = "local" if host == here else host
            nodes[key] = nodes.get(key, 0) + 1
        if nodes["local"] == 0 and len(nodes) == 1:
            nodes["local"] = self.get_ncpus()
        return nodes

    def _stats(self):
        return self._pool.stats(CONTROL_TIMEOUT_S)

    def get_stats(self):
        """{"host:rank": Statistics} for every worker that ran jobs for this server."""
        return {label: Statistics(1, jobs, seconds)
                for label, jobs, seconds in self._stats()["per_worker"]}

    def print_stats(self):
        """pp's job statistics table, one row per worker."""
        stats = self.get_stats()
        total = sum(s.njobs for s in stats.values())
        print("Job execution statistics:")
        print(" job count | % of all jobs | job time sum | time per job | job server")
        for label, s in sorted(stats.items()):
            if s.njobs:
                print("    %6i |        %6.2f |     %8.4f |  %11.6f | %s"
                      % (s.njobs, 100.0 * s.njobs / total, s.time, s.time / s.njobs, label))
        print("Time elapsed since server creation", time.time() - self._created)
        print(self._pool.unfinished(-1), "active tasks,", self.get_ncpus(), "cores")
        print()

    def destroy(self):
        """Stops the workers; unfinished jobs fail with DestroyedServerError."""
        with self._lock:
            if self._destroyed:
                return
            self._destroyed = True
        try:
            self._pool.destroy(CONTROL_TIMEOUT_S)
        except Exception as exc:
            log.warning("ppmpi: destroy: %s", exc)
        with self._lock:
            pending = list(self._callback_jobs.values())
            self._callback_jobs.clear()
        for job in pending:
            job._callback_done.set()
            self._pool.mark_notified(job.tid)
        thread = self._callback_thread
        if thread is not None and thread is not threading.current_thread():
            # It notices within one wait slice; joined so no thread of ours is inside C++
            # when the interpreter finalizes.
            thread.join(timeout=5 * WAIT_SLICE_S)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        self.destroy()
        return False


class Template:
    """pp's Template: a function with its submit options, submitted with ``.submit(*args)``."""

    def __init__(self, job_server, func, depfuncs=(), modules=(), callback=None,
                 callbackargs=(), group="default", globals=None):
        self.job_server, self.func = job_server, func
        self.depfuncs, self.modules = depfuncs, modules
        self.callback, self.callbackargs = callback, callbackargs
        self.group, self.globals = group, globals

    def submit(self, *args):
        return self.job_server.submit(self.func, args, self.depfuncs, self.modules,
                                      self.callback, self.callbackargs, self.group, self.globals)
