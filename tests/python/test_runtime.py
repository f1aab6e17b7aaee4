"""The worker's job runner (ppmpi._worker.WorkerRuntime) and the pickling it shares with the
master, run here in the test process: what a job prints goes back with that job only, the
streams come back whatever the job did to them, and the fast paths for plain values pickle
exactly what the general path does."""
import __main__
import io
import pickle
import sys

import pytest

from ppmpi import _pickling, _worker


def chatty(text):
    print(text)
    print("err", file=sys.stderr)
    return len(text)


def silent(x):
    return x


def rewinds(text):
    print(text)
    sys.stdout.seek(0)  # the buffer still holds the text
    return 0


def replaces_stdout():
    sys.stdout = io.StringIO()
    print("lost to the job's own stream")
    return 1


def fails(text):
    print(text)
    raise ValueError("boom")


def _runtime(*funcs):
    runtime = _worker.WorkerRuntime(7)
    for func in funcs:
        runtime.define(func.__name__, pickle.dumps((func, (), (), False, None), 5))
    return runtime


def _run(runtime, func, *args):
    ok, payload, _seconds, buffers = runtime.run(1, func.__name__, pickle.dumps(args, 5))
    return ok, pickle.loads(payload, buffers=buffers)


def test_output_goes_back_with_its_own_job_only():
    runtime = _runtime(chatty, silent, rewinds)
    assert _run(runtime, chatty, "hello") == (True, (5, "hello\nerr\n"))
    assert _run(runtime, silent, 3) == (True, (3, ""))
    assert _run(runtime, rewinds, "abc") == (True, (0, "abc\n"))
    assert _run(runtime, silent, 4) == (True, (4, ""))


def test_streams_are_restored_after_every_job():
    streams = sys.stdout, sys.stderr
    runtime = _runtime(chatty, fails, replaces_stdout, silent)
    _run(runtime, chatty, "x")
    assert (sys.stdout, sys.stderr) == streams
    ok, (report, output) = _run(runtime, fails, "before the error")
    assert not ok and report["type"] == "ValueError" and output == "before the error\n"
    assert (sys.stdout, sys.stderr) == streams
    assert _run(runtime, replaces_stdout) == (True, (1, ""))
    assert (sys.stdout, sys.stderr) == streams
    assert _run(runtime, silent, "after") == (True, ("after", ""))


@pytest.mark.parametrize("args", [(1, 2.5, "s", b"b", True, None, 3j), (), ("__main__",)])
def test_plain_arguments_pickle_as_plain_pickle_does(args):
    buffers = []
    assert _pickling.dumps(args, 5, buffers) == pickle.dumps(args, 5) and buffers == []


def test_a_large_array_among_arguments_still_goes_out_of_band():
    np = pytest.importorskip("numpy")
    buffers = []
    data = _pickling.dumps((1, np.zeros(1 << 17)), 5, buffers)
    assert len(buffers) == 1 and len(data) < 1000


def test_a_stream_naming_main_is_pickled_by_value():
    """Plain pickle succeeds here but names __main__, which a worker's __main__ lacks: the
    stream must be remade by cloudpickle, which ships the class itself."""
    cls = type("PpmpiTestClass", (), {"value": 42})
    cls.__module__, cls.__qualname__ = "__main__", "PpmpiTestClass"
    __main__.PpmpiTestClass = cls
    try:
        data = _pickling.dumps((cls(),), 5, [])
    finally:
        del __main__.PpmpiTestClass
    (restored,) = pickle.loads(data)  # no __main__.PpmpiTestClass to look up any more
    assert restored.value == 42
