"""The job functions every peer runs. They live in an importable module, at module level, so
that pickle (multiprocessing, concurrent.futures, mpi4py) and cloudpickle (ppmpi) can all send
them; each peer therefore ships the same function by the same means: a reference to
``workloads.<name>`` that the worker imports (bench/ is on every worker's sys.path)."""
import time


def noop(x):
    """The smallest job with an argument and a result: measures the server, not the job."""
    return x


def square(x):
    """Used by the function-bytes workload only, so its counters start from zero there."""
    return x * x


def echo(payload):
    """Returns its argument: the payload crosses to the worker and back again."""
    return payload


def spin(n):
    """Pure-Python CPU work, holding the GIL the whole time: n is calibrated to ~0.2 s."""
    x = 0
    for i in range(n):
        x += i * i
    return x


def timed_spin(n):
    """spin(n), returning the CPU seconds its thread spent in it (time.thread_time): time the
    job's thread was preempted, by the master's own threads or anything else, is not in it."""
    t0 = time.thread_time()
    spin(n)
    return time.thread_time() - t0


def calibrate_spin(seconds=0.2, probe=200_000):
    """The n for which spin(n) takes about `seconds` here, measured serially (best of 3 so a
    neighbour's burst of CPU does not inflate it)."""
    best = min(_timed(spin, probe) for _ in range(3))
    n = max(1, int(probe * seconds / best))
    return n, min(_timed(spin, n) for _ in range(3))


def _timed(func, arg):
    t0 = time.perf_counter()
    func(arg)
    return time.perf_counter() - t0
