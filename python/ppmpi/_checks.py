"""Argument checks shared by Server, Template and Executor: clear exceptions naming the
problem, raised in the caller's thread before anything is sent."""
import types

from . import _serialize


def check_ncpus(ncpus):
    if ncpus == "autodetect":
        return None
    if isinstance(ncpus, bool) or not isinstance(ncpus, int):
        raise TypeError(f"ncpus must be an int or 'autodetect', not {type(ncpus).__name__}")
    if ncpus < 0:
        raise ValueError(f"ncpus must be >= 0, got {ncpus}")
    return ncpus


def check_seconds(name, value, allow_none=True):
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a number of seconds, not {type(value).__name__}")
    if not value > 0:
        raise ValueError(f"{name} must be > 0 seconds, got {value!r}")
    return float(value)


def check_retries(max_retries):
    if isinstance(max_retries, bool) or not isinstance(max_retries, int):
        raise TypeError(f"max_retries must be an int, not {type(max_retries).__name__}")
    if max_retries < 1:
        raise ValueError(f"max_retries must be >= 1, got {max_retries}")
    return max_retries


def check_proto(proto):
    if proto is None:
        return _serialize.DEFAULT_PROTOCOL
    if isinstance(proto, bool) or not isinstance(proto, int) or not 0 <= proto <= 5:
        raise ValueError(f"proto must be a pickle protocol from 0 to 5, got {proto!r}")
    return max(proto, 2)  # cloudpickle needs protocol 2 or later


def check_tuple(name, value):
    if not isinstance(value, tuple):
        raise TypeError(f"{name} argument must be a tuple, not {type(value).__name__}")


def check_submit(args, depfuncs, modules, callback, callbackargs, globals, timeout):
    """submit()'s arguments, as Server.submit and a job's own server (_nested) take them:
    returns (modules, depfuncs, timeout) with globals= folded in."""
    if not (type(args) is tuple and type(depfuncs) is tuple and type(modules) is tuple
            and type(callbackargs) is tuple):  # one test for the usual case
        for name, value in (("args", args), ("depfuncs", depfuncs), ("modules", modules),
                            ("callbackargs", callbackargs)):
            check_tuple(name, value)
    for module in modules:
        if not isinstance(module, str):
            raise TypeError(f"modules entries must be str, not {type(module).__name__}")
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable, not {type(callback).__name__}")
    if globals is not None:
        if not isinstance(globals, dict):
            raise TypeError(f"globals must be a dict, not {type(globals).__name__}")
        modules, depfuncs = from_globals(globals, modules, depfuncs)
    return modules, depfuncs, check_seconds("timeout", timeout)


def from_globals(namespace, modules, depfuncs):
    """pp's globals=: every module and plain function found in the dict is shipped."""
    found_modules = [v.__name__ for k, v in namespace.items()
                     if isinstance(v, types.ModuleType) and k != "__builtins__"
                     and v.__name__ not in ("ppmpi", "pp") and not v.__name__.startswith("ppmpi.")]
    found_funcs = [v for v in namespace.values() if isinstance(v, types.FunctionType)]
    return (modules + tuple(m for m in found_modules if m not in modules),
            depfuncs + tuple(f for f in found_funcs if f not in depfuncs))
