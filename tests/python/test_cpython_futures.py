"""CPython's own concurrent.futures tests, run against ppmpi.Executor.

Lib/test/test_concurrent_futures.py (Debian's libpython3.11-testsuite, for /usr/bin/python3)
writes its executor tests once, as classes parametrised by an executor mixin, and makes the
ThreadPoolExecutor and ProcessPoolExecutor test cases from them with create_executor_tests().
Here every one of those generic classes is made once more with a mixin whose executor_type is
ppmpi.Executor, exactly as create_executor_tests() would (same bases, same MRO):

    ExecutorTest, ExecutorShutdownTest, WaitTests, AsCompletedTests, InitializerMixin,
    FailingInitializerMixin

Not taken (not generic: they are made only with the ProcessPool mixins and test
ProcessPoolExecutor's own machinery: mp_context, _processes, _call_queue, BrokenProcessPool):
ProcessPoolExecutorTest's, ProcessPoolShutdownTest's and ExecutorDeadlockTest's own tests; nor
ThreadPool*Test's own (threads, thread names), nor FutureTests (the Future class alone, no
executor).

SKIPPED below lists the tests that cannot apply as written, each with why; each is followed
by a port here that checks the same thing on ppmpi (the same child script, importing
ppmpi.Executor). Run alone (a singleton driver): the ports start their own drivers.
"""
import os
import subprocess
import sys
import textwrap
import unittest

import pytest
from conftest import launch_mode

import ppmpi

try:
    from test import test_concurrent_futures as cpython
except ImportError as exc:  # not a skip: the check from outside needs these tests to run
    raise ImportError("CPython's test suite is missing: apt-get install -y "
                      "libpython3.11-testsuite (scripts/install_deps.sh)") from exc

CHILD_SCRIPT_REASON = (
    "its child interpreter imports the executor class by name from concurrent.futures "
    "(`from concurrent.futures import {executor_type}`), which for ppmpi.Executor names the "
    "abstract concurrent.futures.Executor; ported below with `from ppmpi import Executor`")

SKIPPED = {
    "test_interpreter_shutdown": CHILD_SCRIPT_REASON,
    "test_submit_after_interpreter_shutdown": CHILD_SCRIPT_REASON,
    "test_hang_gh83386": CHILD_SCRIPT_REASON,
}

pytestmark = pytest.mark.skipif(
    launch_mode() != "alone", reason="its own CTest entry runs it alone: the ports start "
    "singleton drivers, and every test starts an Executor of 5 workers")

GENERIC = (cpython.ExecutorTest, cpython.ExecutorShutdownTest, cpython.WaitTests,
           cpython.AsCompletedTests, cpython.InitializerMixin,
           cpython.FailingInitializerMixin)


class PpmpiMixin(cpython.ExecutorMixin):
    """ThreadPoolMixin's counterpart: no mp_context (no `ctx`), so the tests treat the executor
    as they treat a thread pool where they tell the two apart (FailingInitializerMixin: the
    initializer's error is looked for in the driver's logging)."""
    executor_type = ppmpi.Executor


def _strip(name):  # create_executor_tests' naming
    if name.endswith(("Mixin", "Tests")):
        return name[:-5]
    return name[:-4] if name.endswith("Test") else name


def _make(mixin):
    methods = {}
    for name in dir(mixin):
        if name in SKIPPED:
            assert callable(getattr(mixin, name)), name
            methods[name] = unittest.skip(SKIPPED[name])(getattr(mixin, name))
    return type(f"Ppmpi{_strip(mixin.__name__)}Test", (mixin, PpmpiMixin, cpython.BaseTestCase),
                methods)


for _mixin in GENERIC:
    _case = _make(_mixin)
    globals()[_case.__name__] = _case
del _mixin, _case


def test_every_skipped_name_is_a_cpython_test():
    """A SKIPPED entry that names no test any more (a new CPython) must not hide anything."""
    tests = [(mixin, name) for mixin in GENERIC for name in dir(mixin) if name.startswith("test_")]
    assert set(SKIPPED) <= {name for _, name in tests}
    assert len(tests) >= 30  # the file was read (3.11.2 has 30 tests in these classes)


# -- the child-interpreter tests, ported: the same scripts and checks, with ppmpi.Executor ----

def _run_child(source):
    """The script in a fresh singleton driver (bounded); (returncode, stdout, stderr)."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OMPI_COMM_WORLD", "PMIX_"))}
    proc = subprocess.run([sys.executable, "-X", "faulthandler", "-c",
                           textwrap.dedent(source)],
                          capture_output=True, timeout=120, env=env)
    return proc.returncode, proc.stdout, proc.stderr


def test_interpreter_shutdown__ported():
    """ExecutorShutdownTest.test_interpreter_shutdown: a call still running at exit ends and
    its output is shown; nothing on stderr."""
    rc, out, err = _run_child("""
        from ppmpi import Executor
        from time import sleep
        from test.test_concurrent_futures import sleep_and_print
        if __name__ == "__main__":
            t = Executor(5)
            t.submit(sleep_and_print, 1.0, "apple")
        """)
    assert rc == 0, err
    assert not err
    assert out.strip() == b"apple"


def test_submit_after_interpreter_shutdown__ported():
    """ExecutorShutdownTest.test_submit_after_interpreter_shutdown: submit() from an exit
    hook that runs after the executors' raises RuntimeError."""
    rc, out, err = _run_child("""
        import atexit
        @atexit.register
        def run_last():
            try:
                t.submit(id, None)
            except RuntimeError:
                print("runtime-error")
                raise
        from ppmpi import Executor
        if __name__ == "__main__":
            t = Executor(5)
        """)
    assert rc == 0, err
    assert "RuntimeError: cannot schedule new futures" in err.decode()
    assert out.strip() == b"runtime-error"


def test_hang_gh83386__ported():
    """ExecutorShutdownTest.test_hang_gh83386: shutdown(wait=False) with a call running, then
    exit: no hang, the call ends, nothing on stderr."""
    rc, out, err = _run_child("""
        from ppmpi import Executor
        from test.test_concurrent_futures import sleep_and_print
        if __name__ == "__main__":
            t = Executor(max_workers=3)
            t.submit(sleep_and_print, 1.0, "apple")
            t.shutdown(wait=False)
        """)
    assert rc == 0, err
    assert not err
    assert out.strip() == b"apple"
