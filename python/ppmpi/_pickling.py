"""Pickling of arguments and results, shared by the master and the workers.

Plain pickle is several times faster than cloudpickle for ordinary data, but it pickles
classes and functions by reference, and a reference into ``__main__`` (the driver's classes)
cannot be resolved on a worker, whose ``__main__`` is not the driver. So: plain pickle first;
cloudpickle (which ships such classes by value) when plain pickle fails or the stream names
``__main__``. Functions travel with cloudpickle always (_serialize.dump_bundle)."""
import pickle

import cloudpickle

_MAIN = b"__main__"


def dumps(obj, protocol=pickle.HIGHEST_PROTOCOL):
    try:
        data = pickle.dumps(obj, protocol=protocol)
    except Exception:  # lambdas, local classes, ...: let cloudpickle have a go (or explain)
        return cloudpickle.dumps(obj, protocol=protocol)
    if _MAIN in data:
        return cloudpickle.dumps(obj, protocol=protocol)
    return data


class KwCall:
    """Arguments with keywords: the worker calls ``func(*args, **kwargs)``."""

    __slots__ = ("args", "kwargs")

    def __init__(self, args, kwargs):
        self.args, self.kwargs = args, kwargs

    def __reduce__(self):
        return KwCall, (self.args, self.kwargs)


class Batch:
    """Several calls of one function in one job (Executor.map's chunks): the worker returns
    the list of their results."""

    __slots__ = ("calls",)

    def __init__(self, calls):
        self.calls = calls

    def __reduce__(self):
        return Batch, (self.calls,)


def call(func, payload):
    """Runs one job's call(s) on the worker: payload is an args tuple, a KwCall or a Batch."""
    if type(payload) is tuple:
        return func(*payload)
    if type(payload) is KwCall:
        return func(*payload.args, **payload.kwargs)
    if type(payload) is Batch:
        return [func(*args) for args in payload.calls]
    raise TypeError(f"ppmpi: unexpected job arguments of type {type(payload).__name__}")
