"""Functions the tests submit (a module of their own: workers import it by name)."""
import math
import os
import sys
import time


def gone(pid):
    """True once pid has exited (a zombie waiting for its parent counts as gone). Reading the
    stat of a process that exits meanwhile fails with ESRCH: gone too."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[-1].split()
    except (FileNotFoundError, ProcessLookupError):
        return True
    return not fields or fields[0] in "ZX"


def isprime(n):
    if n < 2:
        return False
    for i in range(2, int(math.isqrt(n)) + 1):
        if n % i == 0:
            return False
    return True


def sum_primes(n):
    return sum(x for x in range(2, n) if isprime(x))


def uses_undeclared_math(x):
    return math_alias.sqrt(x)  # noqa: F821  (math_alias comes from modules=)


def calls_depfunc_by_name(n):
    return helper_square(n) + 1  # noqa: F821  (shipped in depfuncs)


def helper_square(n):
    return n * n


def shout(text):
    print("job says", text)
    print("to stderr", file=sys.stderr)
    return len(text)


def fail(kind, message):
    raise kind(message)


def pid_after(seconds):
    time.sleep(seconds)
    return os.getpid()


def pid_to_file_then_sleep(path, seconds):
    """Says which worker runs it (its pid, in `path`) before it sleeps; returns that pid."""
    with open(path + ".tmp", "w") as f:
        f.write(str(os.getpid()))
    os.replace(path + ".tmp", path)
    time.sleep(seconds)
    return os.getpid()


def sleep_and_return(seconds, value):
    time.sleep(seconds)
    return value


def exit_job(code):
    sys.exit(code)


def make_generator(n):
    return (i for i in range(n))


class Accumulator:
    def __init__(self, start):
        self.start = start

    def add(self, x):
        return self.start + x


class Point:
    def __init__(self, x, y):
        self.x, self.y = x, y

    def norm2(self):
        return self.x * self.x + self.y * self.y


def norm2_of(point):
    return point.norm2()


def die_hard(x):
    os._exit(7)


def segfault(x):
    import ctypes
    return ctypes.string_at(0)


def recurse(n):
    return recurse(n + 1) + 1


def allocate_too_much(gib):
    return bytearray(gib << 30)


def print_megabytes(mb):
    line = "x" * 1023
    for _ in range(mb * 1024):
        print(line)
    return mb


def length_of(data):
    return len(data)


COUNTER = 0


def bump_counter():
    """Changes this module's namespace: restart=True must hide that from the next job."""
    global COUNTER
    COUNTER += 1
    return COUNTER


def needs_extra_helper(n):
    return extra_helper(n)  # noqa: F821  (defined nowhere here: only depfuncs= provides it)


def mark_initialized(tag):
    os.environ["PPMPI_TEST_INIT"] = os.environ.get("PPMPI_TEST_INIT", "") + tag


def pid_and_init_marks(_x=None):
    return os.getpid(), os.environ.get("PPMPI_TEST_INIT", "")


def failing_initializer():
    raise OSError("no such resource")


def add(a, b=0, *, scale=1):
    return (a + b) * scale


def double(x):
    return x * 2


class Scaler:
    """Its bound method is a job's function that holds a user object (test_references)."""

    def __init__(self, k):
        self.k = k

    def scale(self, point):
        return Point(point.x * self.k, point.y * self.k)

    def explode(self, payload):
        raise TrackedError(payload)


class TrackedError(Exception):
    """Unlike the built-in exceptions, can be weakly referenced."""


def make_point(x, y=0):
    return Point(x, y)


def array_sum(array):
    return float(array.sum())


def children_results_alive(n):
    """Runs as a job: n children through ppmpi.get_executor(), each result taken and dropped;
    returns how many of those results are still alive (the job's own ppmpi keeps them)."""
    import weakref

    import ppmpi

    executor = ppmpi.get_executor()
    refs = []
    for i in range(n):
        future = executor.submit(make_point, i)
        refs.append(weakref.ref(future.result(30)))
        del future
    return sum(1 for ref in refs if ref() is not None)
