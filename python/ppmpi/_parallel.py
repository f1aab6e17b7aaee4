"""Parallel jobs (``submit(..., nranks=k)``): ``ppmpi.comm()`` inside them, ``ppmpi.parallel``
for the Executor, and reading the k ranks' outcomes from the one payload the master sends
(its layout: include/ppmpi/core/gangs.hpp, pack_gang_parts)."""
import pickle
import struct

from . import _serialize

_handle = None  # on a worker running a parallel job: its communicator's (Fortran) handle
_comm = None    # ... as an mpi4py communicator, made on first use

MPI4PY_MISSING = ("ppmpi.comm() needs mpi4py: install Debian's python3-mpi4py "
                  "(apt-get install -y python3-mpi4py)")


def comm():
    """The mpi4py ``Intracomm`` of the parallel job running here: exactly its k ranks, rank i
    being the job's i-th. Valid only while the job runs (ppmpi frees it afterwards)."""
    global _comm
    if _handle is None:
        raise RuntimeError("ppmpi.comm() is only available inside a parallel job: submit the "
                           "function with server.submit(..., nranks=k), or "
                           "ppmpi.parallel(fn, nranks=k) for an Executor")
    if _comm is None:
        try:
            from mpi4py import MPI
        except ImportError as exc:
            raise ImportError(MPI4PY_MISSING) from exc
        _comm = MPI.Comm.f2py(_handle)
    return _comm


def run_with(handle, run, *args):
    """Runs one job on this worker with `handle` as ppmpi.comm()."""
    global _handle, _comm
    _handle, _comm = handle, None
    try:
        return run(*args)
    finally:
        _handle, _comm = None, None


def check_nranks(nranks, ncpus, remote):
    """submit()'s nranks: None (an ordinary job) or an int >= 1 that this server's own `ncpus`
    workers can form (`remote`: it has remote servers too, whose workers run no parallel job)."""
    if nranks is None:
        return None
    if type(nranks) is not int:  # bool is an int: refused too
        raise TypeError(f"nranks must be an int, not {type(nranks).__name__}")
    if nranks < 1:
        raise ValueError(f"nranks must be at least 1, not {nranks}")
    if ncpus is not None and nranks > ncpus:
        others = " (remote servers' workers do not run parallel jobs yet)" if remote else ""
        raise ValueError(f"nranks={nranks} is more than this server's {ncpus} workers{others}; "
                         f"a parallel job needs that many of them at once")
    return nranks


class parallel:
    """``ppmpi.parallel(fn, nranks=k)``: fn as a parallel job for ``Executor.submit`` / ``map``
    (whose keyword arguments belong to fn). The future's result is the list of the k ranks'
    return values, in rank order."""

    def __init__(self, fn, nranks):
        if not callable(fn):
            raise TypeError(f"fn must be callable, not {type(fn).__name__}")
        check_nranks(nranks, None, False)
        self.fn, self.nranks = fn, nranks

    def __call__(self, *args, **kwargs):  # run directly: as one rank would, without comm()
        return self.fn(*args, **kwargs)

    def __repr__(self):
        return f"ppmpi.parallel({self.fn!r}, nranks={self.nranks})"


def _parts(payload, buffers):
    """[(state, payload, buffers)] per rank: state 0 ok, 1 error, 2 no answer."""
    view = memoryview(payload)
    if bytes(view[:4]) != b"PPG1":
        raise RuntimeError("ppmpi: a parallel job's outcome is malformed")
    (count,) = struct.unpack_from("<I", view, 4)
    at, used, parts = 8, 0, []
    for _ in range(count):
        state, size, nbuf = struct.unpack_from("<BQI", view, at)
        at += 13
        parts.append((state, view[at:at + size], list(buffers[used:used + nbuf])))
        at += size
        used += nbuf
    return parts


def unpack(payload, buffers, label):
    """(results in rank order, None, output) or (None, the exception to raise, output): the
    lowest failed rank's exception, with the other ranks' failures as notes."""
    results, errors, silent, outputs = [], [], [], []
    for rank, (state, data, bufs) in enumerate(_parts(payload, buffers)):
        if state == 2:
            silent.append(rank)
            continue
        if state == 1:
            report, output = pickle.loads(data)
            errors.append((rank, report))
        else:
            result, output = pickle.loads(data, buffers=bufs) if bufs else pickle.loads(data)
            results.append(result)
        outputs.append(output)
    output = "".join(outputs)
    if not errors and not silent:
        return results, None, output
    if not errors:
        return None, RuntimeError(f"{label}: ranks {silent} did not answer"), output
    rank, report = errors[0]
    error = _serialize.rebuild_error(report, f"{label}, rank {rank}")
    for other, other_report in errors[1:]:
        error.add_note(f"rank {other} failed too: {other_report['type']}: "
                       f"{other_report['message']}")
    if silent:
        error.add_note(f"ranks {silent} did not finish (stopped after the failure; they are "
                       f"replaced)")
    return None, error, output
