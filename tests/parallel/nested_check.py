"""Nested jobs (ppmpi.get_server() inside a job) in whichever launch mode this runs in: alone,
under mpirun --enable-recovery -np 3, or ppmpirun -np 3 (two workers). Each check prints
"OK: ..."; the last line is "OK: all nested checks passed". Every wait is bounded.

    /usr/bin/python3 tests/parallel/nested_check.py"""
import io
import os
import signal
import sys
import tempfile
import time

import ppmpi  # first: under mpirun, ranks 1.. become workers here

import bounded  # tests/parallel/bounded.py, beside this file

BOUND_S = 120.0


def wait_for(job, bound=BOUND_S):
    return bounded.wait_for(job, bound)


def fib(n):
    if n < 2:
        return n
    server = ppmpi.get_server()
    a, b = server.submit(fib, (n - 1,)), server.submit(fib, (n - 2,))
    return a() + b()


def nap(seconds):
    time.sleep(seconds)
    return seconds


def fan_out(count, seconds):
    server = ppmpi.get_server()
    jobs = [server.submit(nap, (seconds,)) for _ in range(count)]
    return sum(job() for job in jobs)


def noop(x):
    return x


def many(count):
    executor = ppmpi.get_executor()
    futures = [executor.submit(noop, i) for i in range(count)]
    return sum(f.result() for f in futures)


def raiser():
    raise KeyError("child failed")


def catches():
    try:
        ppmpi.get_server().submit(raiser)()
    except KeyError as exc:
        return f"caught {exc}"
    return "not raised"


def talker(name):
    print(f"child {name}")
    return name


def prints_around():
    print("parent before")
    got = ppmpi.get_server().submit(talker, ("c",))()
    print("parent after")
    return got


def dies_once(marker):
    server = ppmpi.get_server()
    jobs = [server.submit(nap, (0.3,)) for _ in range(3)]
    if not os.path.exists(marker):
        open(marker, "w").close()
        os.kill(os.getpid(), signal.SIGKILL)
    return sum(job() for job in jobs)


def keeps_handle():
    # Kept on the worker's sys module (a global of this file would travel with each job, copied).
    sys.kept_child = ppmpi.get_server().submit(noop, (1,))
    return sys.kept_child()


def uses_kept_handle():
    if not hasattr(sys, "kept_child"):
        return "no handle here"
    try:
        sys.kept_child.wait(1.0)
    except RuntimeError as exc:
        return "refused" if "not running here" in str(exc) else str(exc)
    return "allowed"


def slow_marker(path):
    time.sleep(3)
    open(path, "w").close()
    return True


def waits_on_slow(path):
    return ppmpi.get_server().submit(slow_marker, (path,))()


def chain(depth):
    if depth == 0:
        return 0
    return 1 + ppmpi.get_server().submit(chain, (depth - 1,))()


def check_fib():
    for ncpus in (1, 2):
        with ppmpi.Server(ncpus) as server:
            start = time.monotonic()
            assert wait_for(server.submit(fib, (15,))) == 610
            print(f"OK: fib(15) by recursive submits on Server({ncpus}) in "
                  f"{time.monotonic() - start:.2f} s")


def check_fan_out(server):
    start = time.monotonic()
    assert abs(wait_for(server.submit(fan_out, (8, 0.2))) - 1.6) < 1e-9
    took = time.monotonic() - start
    assert took < 1.3, f"8 children of 0.2 s took {took:.2f} s on 2 workers (serial: 1.6 s)"
    start = time.monotonic()
    assert wait_for(server.submit(many, (1000,))) == sum(range(1000))
    rate = 1000 / (time.monotonic() - start)
    print(f"OK: a parent with 8 children of 0.2 s in {took:.2f} s; 1,000 children through "
          f"get_executor() at {rate:.0f}/s")


def check_errors_and_output(server):
    assert wait_for(server.submit(catches)) == "caught 'child failed'"
    job = server.submit(prints_around)
    deadline = time.monotonic() + BOUND_S  # not through job.future: that shows the output
    while not job.finished and time.monotonic() < deadline:
        time.sleep(0.01)
    shown, sys.stdout = sys.stdout, io.StringIO()
    try:
        assert job() == "c"
        output = sys.stdout.getvalue()
    finally:
        sys.stdout = shown
    assert output == "parent before\nchild c\nparent after\n", repr(output)
    print("OK: a child's exception is caught in its parent; a child's printed lines come back "
          "with it, in order, not mixed into its parent's")


def check_lost_parent(server):
    marker = os.path.join(tempfile.mkdtemp(), "died")
    assert abs(wait_for(server.submit(dies_once, (marker,))) - 0.9) < 1e-9
    print("OK: the parent's worker SIGKILLed after submitting children: it ran again, once "
          "delivered")


def check_cancel(server):
    marker = os.path.join(tempfile.mkdtemp(), "child-finished")
    parent = server.submit(waits_on_slow, (marker,))
    time.sleep(1.0)
    assert parent.cancel()
    time.sleep(3.5)
    assert not os.path.exists(marker), "a cancelled parent's child ran on"
    assert wait_for(server.submit(noop, (5,))) == 5
    print("OK: cancelling a parent stops its running child too; the pool goes on")


def check_foreign_and_deep(server):
    assert wait_for(server.submit(keeps_handle)) == 1
    answers = {wait_for(server.submit(uses_kept_handle)) for _ in range(8)}
    assert "allowed" not in answers and "refused" in answers, answers
    try:
        ppmpi.get_server()
        raise AssertionError("get_server() on the driver")
    except RuntimeError:
        pass
    try:
        result = wait_for(server.submit(chain, (200,)))
        assert result == 200, result
        deep = "completed"
    except RecursionError:
        deep = "raised RecursionError"
    assert wait_for(server.submit(noop, (7,))) == 7
    print(f"OK: waiting on another job's handle refused; get_server() on the driver raises; "
          f"a 200-deep chain {deep} and the server goes on serving")


def main():
    check_fib()
    with ppmpi.Server(2, max_retries=3) as server:
        check_fan_out(server)
        check_errors_and_output(server)
        check_lost_parent(server)
        check_cancel(server)
        check_foreign_and_deep(server)
    print("OK: all nested checks passed")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
