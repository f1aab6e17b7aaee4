"""The jobs of the scale benchmark (module level: every peer ships them by reference)."""
import os
import time


def noop(x):
    return x


def sleep_job(seconds):
    time.sleep(seconds)
    return os.getpid()


def gather(directory, count, limit=120.0):
    """Marks this job started (one byte appended to a file in `directory`), then waits, polling
    the file's size every 20 ms (one stat: cheap even with hundreds polling), at most `limit`
    s, until `count` jobs have: a barrier that opens only once `count` jobs run at the same
    time. Returns (this worker's pid, when it started, time.monotonic() clock)."""
    started = time.monotonic()
    path = os.path.join(directory, "started")
    with open(path, "ab", buffering=0) as f:  # O_APPEND: one write, one byte, never torn
        f.write(b"x")
    deadline = started + limit
    while os.stat(path).st_size < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return os.getpid(), started
