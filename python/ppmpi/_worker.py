"""The job runner inside every worker (ppmpi-worker's embedded interpreter, or a python3 rank
under mpirun). Called from C++ (python_job_runner.cpp), one call at a time.

run() never raises for a job's own errors: it returns (ok, payload, seconds, buffers), where
payload is the pickled (result, output) (large arrays out of band, in buffers) or a pickled
error report with the worker's traceback."""
import io
import os
import pickle
import sys
import time
import traceback
import types

import cloudpickle

from . import _nested, _parallel, _pickling
from .errors import InitializerError, JobExit, ResultPicklingError

PROTOCOL = pickle.HIGHEST_PROTOCOL
# The largest pickled result: set by the worker loop when it sets this module up
# (python_job_runner.cpp: core/frame.hpp's kMaxPayloadBytes, one MPI message).
MAX_PAYLOAD_BYTES = None


def _unconfigured_bound():
    """The bound for a WorkerRuntime run outside a worker loop (tests): _core's, loaded in this
    process anyway (a worker loop never gets here: loading _core there would start MPI twice)."""
    from ._serialize import max_payload_bytes

    return max_payload_bytes()


class _JobOutput(io.StringIO):
    """A job may close sys.stdout; its output must still be readable afterwards."""

    def close(self):
        pass


class _Capture:
    """Sends sys.stdout and sys.stderr of one job into one buffer (pp shows it on the master).
    One per worker, emptied once read (a new StringIO per job cost ~0.3 µs of a ~2 µs no-op
    job); the job runner swaps the streams itself (a `with` block cost two more calls)."""

    def __init__(self):
        self.buffer = _JobOutput()

    def take(self):
        """What the job wrote, and the buffer emptied for the next one."""
        text = self.buffer.getvalue()
        if text:
            self.buffer.seek(0)
            self.buffer.truncate()
        return text


def _name(func):
    """A job's function as reports name it ("?" if it was not even loaded)."""
    if func is None:
        return "?"
    return _safe(lambda f: getattr(f, "__qualname__", None) or repr(f), func)


def _safe(render, value):
    """render(value), or a placeholder when the job's object refuses to be rendered."""
    try:
        return render(value)
    except BaseException as exc:  # noqa: B036  (a job's object may raise anything here)
        return f"<{type(value).__name__} that could not be shown: {type(exc).__name__}>"


def _imports(modules):
    """pp's modules entries ("math", "from x import y", "import a.b as c"), imported."""
    names = {}
    for entry in modules:
        statement = entry if entry.startswith(("import ", "from ")) else f"import {entry}"
        scratch = {}
        exec(statement, scratch)  # raises ImportError at the job, naming the module
        scratch.pop("__builtins__", None)
        names.update(scratch)
    return names


def _in_module(g):
    """True if g is the namespace of an imported module (a function pickled by reference)."""
    module = sys.modules.get(g.get("__name__"))
    return module is not None and getattr(module, "__dict__", None) is g


def _rebind(obj, private):
    """obj (a function or bound method) using a private copy of its module's namespace, so
    names injected for this job's function never land in the module itself, where they would
    leak to every later job on this worker."""
    target = getattr(obj, "__func__", obj)
    g = getattr(target, "__globals__", None)
    if not isinstance(target, types.FunctionType) or not _in_module(g):
        return obj
    namespace = private.setdefault(id(g), dict(g))
    copy = types.FunctionType(target.__code__, namespace, target.__name__, target.__defaults__,
                              target.__closure__)
    copy.__kwdefaults__, copy.__qualname__ = target.__kwdefaults__, target.__qualname__
    copy.__dict__.update(target.__dict__)
    return types.MethodType(copy, obj.__self__) if obj is not target else copy


def _prepare(func, depfuncs, modules, fresh):
    """pp semantics: modules are imported, and depfuncs callable by name, in the function's
    namespace (and in each depfunc's). Functions from __main__ arrive with a namespace of
    their own bundle (cloudpickle); functions of importable modules get a private copy of the
    module's namespace first (also for every job when `fresh`, restart=True). Either way
    nothing leaks between bundles."""
    injected = _imports(modules)
    if not injected and not depfuncs and not fresh:
        return func
    private = {}
    func = _rebind(func, private)
    depfuncs = tuple(_rebind(dep, private) for dep in depfuncs)
    namespaces = {}
    for obj in (func,) + depfuncs:
        g = getattr(getattr(obj, "__func__", obj), "__globals__", None)
        if isinstance(g, dict):
            namespaces[id(g)] = g
    for g in namespaces.values():
        g.update(injected)
        for dep in depfuncs:
            name = getattr(dep, "__name__", None)
            if name and (id(g) in private or name not in g):
                g[name] = dep
    return func


class WorkerRuntime:
    def __init__(self, worker_id, host=None):
        """host: the worker loop's (submit, wait) for jobs' own jobs (_nested)."""
        self.worker_id = worker_id
        _nested.attach(host, self)
        self.host = os.uname().nodename  # gethostname(), without importing socket
        self.bundles = {}
        self.loaded = {}
        self.initialized = set()  # keys of the Executor initializers run in this process
        self._capture = _Capture()

    def define(self, key, data):
        self.bundles[key] = data
        self.loaded.pop(key, None)

    def _function(self, key):
        func = self.loaded.get(key)
        if func is None:
            if key not in self.bundles:
                raise RuntimeError(f"ppmpi: function {key} was never sent to this worker")
            func, depfuncs, modules, fresh, init = pickle.loads(self.bundles[key])
            if init is not None and init[0] not in self.initialized:
                self._initialize(*init)
            func = _prepare(func, depfuncs, modules, fresh)
            if not fresh:
                self.loaded[key] = func
        return func

    def _initialize(self, init_key, initializer, initargs):
        try:
            initializer(*initargs)
        except Exception as exc:
            raise InitializerError(f"the executor's initializer {initializer!r} raised "
                                   f"{type(exc).__name__}: {exc}") from exc
        self.initialized.add(init_key)

    def run(self, job_id, key, args_data, args_buffers=(), comm=None):
        """Runs one job: (True, payload, seconds, buffers) or (False, error report, seconds,
        []). args_buffers: the arguments' out-of-band buffers, in memory the C++ side owns.
        comm: a parallel job's communicator handle (ppmpi.comm())."""
        if comm is not None:
            return _parallel.run_with(comm, self.run, job_id, key, args_data, args_buffers)
        stack = _nested.stack
        if stack:  # a child, inside the wait of a job running here
            return _nested.run_inline(self, self._run, job_id, key, args_data, args_buffers)
        stack.append(job_id)
        try:
            return self._run(job_id, key, args_data, args_buffers)
        finally:
            stack.pop()

    def _run(self, job_id, key, args_data, args_buffers):
        # The time reported is the job's own, without loading its function (an import the
        # first time on this worker): the master sizes its pipelining by it (scheduler.hpp),
        # and one slow first load taught it that no-op jobs take milliseconds.
        # Every job pays for each line here: a no-op job's whole cost is this function.
        func = start = None
        saved = sys.stdout, sys.stderr
        sys.stdout = sys.stderr = self._capture.buffer
        try:
            func = self.loaded.get(key)
            if func is None:
                func = self._function(key)
            start = time.perf_counter()
            args = (pickle.loads(args_data, buffers=args_buffers) if args_buffers
                    else pickle.loads(args_data))
            result = func(*args) if type(args) is tuple else _pickling.call(func, args)
        except BaseException as exc:  # the job's error, whatever it is, goes back to the master
            sys.stdout, sys.stderr = saved
            report = self._report(exc, job_id, _name(func), self._capture.take())
            seconds = 0.0 if start is None else time.perf_counter() - start
            return False, report, seconds, []
        sys.stdout, sys.stderr = saved
        seconds = time.perf_counter() - start
        output = self._capture.take()
        try:
            buffers = []  # a plain result makes a plain tuple: dumps skips its checks
            payload = _pickling.dumps((result, output), PROTOCOL, buffers)
            if len(payload) > (MAX_PAYLOAD_BYTES or _unconfigured_bound()):
                raise ValueError(f"it pickles to {len(payload)} bytes (besides its large "
                                 f"arrays), over the 2 GiB that one MPI message carries")
            return True, payload, seconds, buffers
        except BaseException as exc:
            error = ResultPicklingError(
                f"job {job_id} ({_name(func)}) returned a {type(result).__name__} that cannot be "
                f"pickled to send back: {type(exc).__name__}: {exc}")
            return False, self._report(error, job_id, _name(func), output), seconds, []

    def _report(self, exc, job_id, name, output):
        where = f"{self.host}:{self.worker_id}"
        if isinstance(exc, (SystemExit, KeyboardInterrupt)):
            what = "sys.exit(%s)" % _safe(repr, exc.code) if isinstance(exc, SystemExit) \
                else "KeyboardInterrupt"
            exc = JobExit(f"job {job_id} ({name}) called {what} on worker {where}")
        # The exception is the job's object: its __str__ (used by the traceback too) may raise.
        lines = _safe(lambda e: "".join(traceback.format_exception(type(e), e, e.__traceback__)),
                      exc)
        text = f'\n"""\nWorker {where}, job {job_id} ({name}):\n' + lines + '"""'
        try:
            pickled = cloudpickle.dumps(exc, protocol=PROTOCOL)
            pickle.loads(pickled)  # some exceptions pickle but do not unpickle
        except BaseException:
            pickled = None
        report = {"exc": pickled, "type": type(exc).__qualname__, "message": _safe(str, exc),
                  "traceback": text, "where": where}
        return cloudpickle.dumps((report, output), protocol=PROTOCOL)


def warm_up():
    """Runs one job through a throwaway runtime (PythonJobRunner::prepare, while MPI starts), so
    that the first real job finds unpickling, the call and the result's pickling warm: on a
    fresh worker that first pass cost ~0.3 ms, a few dozen no-op jobs' worth."""
    runtime = WorkerRuntime(-1)
    runtime.define("warm-up", pickle.dumps((abs, (), (), False, None), PROTOCOL))
    ok, payload, _, _ = runtime.run(0, "warm-up", pickle.dumps((-1,), PROTOCOL))
    if not ok or pickle.loads(payload)[0] != 1:
        raise RuntimeError("ppmpi: the worker's warm-up job failed")
