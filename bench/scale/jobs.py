"""The jobs of the scale benchmark (module level: every peer ships them by reference)."""
import os
import time


def noop(x):
    return x


def sleep_job(seconds):
    time.sleep(seconds)
    return os.getpid()


def gather(directory, count, limit=120.0):
    """Marks this job started in `directory`, then waits (polling, at most `limit` s) until
    `count` jobs have: a barrier that opens only once `count` jobs run at the same time.
    Returns (this worker's pid, when it started, time.monotonic() clock)."""
    started = time.monotonic()
    open(os.path.join(directory, f"{os.getpid()}-{started}"), "w").close()
    deadline = started + limit
    while len(os.listdir(directory)) < count and time.monotonic() < deadline:
        time.sleep(0.005)
    return os.getpid(), started
