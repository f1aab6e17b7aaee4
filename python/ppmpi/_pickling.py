"""Pickling of arguments and results, shared by the master and the workers.

Plain pickle is several times faster than cloudpickle for ordinary data, but it pickles
classes and functions by reference, and a reference into ``__main__`` (the driver's classes)
cannot be resolved on a worker, whose ``__main__`` is not the driver. So: plain pickle first;
cloudpickle (which ships such classes by value) when plain pickle fails or the stream names
``__main__``. Functions travel with cloudpickle always (_serialize.dump_bundle).

Large buffers (numpy arrays, bytearrays, ... at least OUT_OF_BAND_MIN bytes, contiguous) are
pickled out-of-band (protocol 5): the stream keeps only a reference, and each buffer's memory is
handed to the C++ transport, which sends it straight from there (and receives it into memory
that the rebuilt array then uses). Nothing copies the data in Python on either side."""
import pickle

import cloudpickle

_MAIN = b"__main__"
# Values of these types pickle with nothing out-of-band and nothing named in __main__: a tuple
# of them (a typical job's arguments) skips the checks below.
PLAIN_TYPES = frozenset({int, float, str, bytes, bool, complex, type(None)})
# Smaller buffers stay in the stream: each out-of-band buffer is one more MPI message.
OUT_OF_BAND_MIN = 64 * 1024


def _collector(buffers):
    """A pickle buffer_callback that keeps large contiguous buffers out of the stream."""
    def take(pickle_buffer):
        try:
            raw = pickle_buffer.raw()  # BufferError if not contiguous: stays in the stream
        except BufferError:
            return True
        if raw.nbytes < OUT_OF_BAND_MIN:
            return True
        buffers.append(raw)
        return False
    return take


def dumps(obj, protocol=pickle.HIGHEST_PROTOCOL, buffers=None):
    """Pickles obj. With a list as `buffers` (and protocol 5+), large buffers are appended to
    it instead of being copied into the stream."""
    if type(obj) is tuple:
        for item in obj:
            if type(item) not in PLAIN_TYPES:
                break
        else:
            return pickle.dumps(obj, protocol)
    if buffers is not None and protocol < 5:
        buffers = None
    callback = None if buffers is None else _collector(buffers)
    try:
        data = pickle.dumps(obj, protocol, buffer_callback=callback)
    except Exception:  # lambdas, local classes, ...: let cloudpickle have a go (or explain)
        return _cloudpickle(obj, protocol, buffers)
    if data.find(_MAIN) != -1:  # not `in`: bytes.__contains__ raises and clears a TypeError
        return _cloudpickle(obj, protocol, buffers)
    return data


def _cloudpickle(obj, protocol, buffers):
    if buffers is None:
        return cloudpickle.dumps(obj, protocol=protocol)
    del buffers[:]  # what a failed or discarded attempt collected
    return cloudpickle.dumps(obj, protocol=protocol, buffer_callback=_collector(buffers))


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
