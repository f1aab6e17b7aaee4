"""Master-side (de)serialization: function bundles, arguments, results and remote errors.

Functions travel with cloudpickle, so lambdas, closures, ``__main__`` functions, bound methods
and instances of ``__main__`` classes work. A bundle is the tuple (func, depfuncs, modules,
fresh, init); its key is a digest of its bytes, so equal keys mean equal bundles (no id() reuse)."""
import builtins
import pickle
import re

import cloudpickle

from . import _bundles, _pickling
from .errors import DestroyedServerError, JobExit, RemoteError, RemoteTraceback

DEFAULT_PROTOCOL = pickle.HIGHEST_PROTOCOL


def max_payload_bytes():
    """The largest pickled job data: one MPI message carries at most 2 GiB (INT_MAX bytes),
    less room for headers (kMaxPayloadBytes in core/frame.hpp, which _core exports)."""
    from ._core import MAX_PAYLOAD_BYTES

    return MAX_PAYLOAD_BYTES


def check_size(what, data):
    if len(data) > max_payload_bytes():
        raise ValueError(f"{what} pickle to {len(data)} bytes; one job's data must stay under "
                         f"2 GiB (one MPI message)")

# Outcome codes as constants (OK, REMOTE_ERROR, ... for Ok, RemoteError, ...): read from the
# one table, core/outcomes.hpp, which _core exports as OUTCOMES; looked up on first use, so
# importing ppmpi loads no MPI library.
def _outcome_code(constant):
    from ._core import OUTCOMES

    for name, code in OUTCOMES.items():
        if re.sub(r"(?<!^)(?=[A-Z])", "_", name).upper() == constant:
            globals()[constant] = code  # from now on a plain module attribute
            return code
    return None


def __getattr__(name):
    if name.isupper() and not name.startswith("_") and name != "MAX_PAYLOAD_BYTES":
        code = _outcome_code(name)
        if code is not None:
            return code
    if name == "MAX_PAYLOAD_BYTES":
        return max_payload_bytes()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def describe(obj):
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return name if name else type(obj).__name__


_bundle_cache = _bundles.BundleCache()


def dump_bundle(func, depfuncs, modules, fresh, protocol, init=None):
    """Returns (key, bytes) for the function and what it needs on the worker."""
    try:
        return _bundle_cache.get(func, depfuncs, modules, fresh, init, protocol)
    except Exception as exc:
        for obj in (func,) + tuple(depfuncs) + ((init[1],) if init else ()):
            try:
                cloudpickle.dumps(obj, protocol=protocol)
            except Exception as inner:
                raise TypeError(f"cannot pickle {describe(obj)!r} to send it to the workers: "
                                f"{type(inner).__name__}: {inner}") from inner
        raise TypeError(f"cannot pickle function {describe(func)!r}: {exc}") from exc


def warm_up():
    """Pickles and hashes a bundle and arguments once, for nothing: a server's first submit
    then does not pay first-use costs (~0.1 ms measured) inside what its caller times."""
    _bundles.dump((abs, (), (), False, None), DEFAULT_PROTOCOL)
    _pickling.dumps((0,), DEFAULT_PROTOCOL, [])


def _named_parts(args):
    if isinstance(args, _pickling.KwCall):
        return ([(f"argument {i}", a) for i, a in enumerate(args.args)] +
                [(f"keyword argument {k!r}", v) for k, v in args.kwargs.items()])
    if isinstance(args, _pickling.Batch):
        return [(f"the arguments of item {i}", a) for i, a in enumerate(args.calls)]
    return [(f"argument {i}", a) for i, a in enumerate(args)]


def dump_args(func, args, protocol):
    """args: a tuple, or a _pickling.KwCall / Batch (whose arguments are checked the same).
    Returns (stream, out-of-band buffers)."""
    buffers = []
    try:
        return _pickling.dumps(args, protocol, buffers), buffers
    except Exception as exc:
        for what, arg in _named_parts(args):
            try:
                cloudpickle.dumps(arg, protocol=protocol)
            except Exception as inner:
                raise TypeError(f"cannot pickle {what} of {describe(func)}() "
                                f"(a {type(arg).__name__}): {type(inner).__name__}: {inner}"
                                ) from inner
        raise TypeError(f"cannot pickle the arguments of {describe(func)}(): {exc}") from exc


def rebuild_error(report, job_label):
    """The exception a job raised on its worker, with the remote traceback as its cause."""
    exc = None
    if report.get("exc") is not None:
        try:
            exc = pickle.loads(report["exc"])
        except Exception:
            exc = None
    builtin = getattr(builtins, report["type"], None)
    if exc is None and isinstance(builtin, type) and issubclass(builtin, Exception):
        try:  # a builtin exception whose pickle was lost (a RecursionError too deep to pickle)
            exc = builtin(report["message"])
        except Exception:
            exc = None
    if exc is None:
        exc = RemoteError(f"{report['type']}: {report['message']}")
    exc.__cause__ = RemoteTraceback(report["traceback"])
    if hasattr(exc, "add_note"):
        exc.add_note(f"(raised by {job_label} on worker {report['where']})")
    return exc


def outcome_error(code, message, job_label):
    """The exception for a job that ended without a result from its function."""
    from .errors import JobTimeout, NoWorkers, WorkerLost

    kinds = {_outcome_code("DESTROYED"): DestroyedServerError,
             _outcome_code("WORKER_LOST"): WorkerLost, _outcome_code("TIMEOUT"): JobTimeout,
             _outcome_code("NO_WORKERS"): NoWorkers}
    if code == _outcome_code("CANCELLED"):
        import concurrent.futures
        return concurrent.futures.CancelledError(f"{job_label} was cancelled")
    kind = kinds.get(code, RuntimeError)
    if kind is DestroyedServerError:
        return kind(message)
    return kind(f"{job_label}: {message}")


__all__ = ["dump_bundle", "dump_args", "rebuild_error", "outcome_error", "JobExit"]
