"""The pp API: submit, job(), results equal to a serial run, what functions can be shipped."""
import math
import threading
import time

import helpers
import ppmpi
import pytest


def test_sum_primes_matches_serial(server):
    inputs = range(10_000, 10_040)
    jobs = [server.submit(helpers.sum_primes, (n,), (helpers.isprime,), ("math",))
            for n in inputs]
    assert [job() for job in jobs] == [helpers.sum_primes(n) for n in inputs]


def test_job_result_is_stable_when_called_twice(server):
    job = server.submit(helpers.helper_square, (12,))
    assert job() == 144
    assert job() == 144
    assert job.finished


def test_lambda_and_closure(server):
    offset = 7
    assert server.submit(lambda x: x + offset, (1,))() == 8

    def make_adder(k):
        return lambda x: x + k

    assert [server.submit(make_adder(k), (1,))() for k in range(3)] == [1, 2, 3]


def test_modules_entry_is_imported_in_the_function_namespace(server):
    job = server.submit(helpers.uses_undeclared_math, (16.0,),
                        modules=("import math as math_alias",))
    assert job() == 4.0


def test_from_import_modules_form(server):
    def det2(m):
        return determinant(m)  # noqa: F821

    job = server.submit(det2, ([[1.0, 2.0], [3.0, 4.0]],),
                        modules=("from numpy.linalg import det as determinant",))
    assert job() == pytest.approx(-2.0)


def test_depfuncs_are_callable_by_name(server):
    job = server.submit(helpers.calls_depfunc_by_name, (5,), (helpers.helper_square,))
    assert job() == 26


def test_bound_method_and_instance_argument(server):
    acc = helpers.Accumulator(100)
    assert server.submit(acc.add, (5,))() == 105
    assert server.submit(helpers.norm2_of, (helpers.Point(3, 4),))() == 25


def test_builtin_function(server):
    assert server.submit(math.factorial, (10,))() == 3628800


def test_numpy_argument_and_result(server):
    np = pytest.importorskip("numpy")
    a = np.arange(100_000, dtype=np.float64)
    out = server.submit(np.multiply, (a, 2.0))()
    assert isinstance(out, np.ndarray) and out.shape == a.shape
    assert float(out.sum()) == pytest.approx(2.0 * float(a.sum()))


def test_output_is_shown_on_the_master_when_the_result_is_taken(server, capsys):
    job = server.submit(helpers.shout, ("hello",))
    job.wait()
    assert "job says" not in capsys.readouterr().out
    assert job() == 5
    out = capsys.readouterr().out
    assert "job says hello\n" in out and "to stderr\n" in out
    assert "\x00" not in out
    job()
    assert capsys.readouterr().out == ""  # shown once


def test_wait_with_timeout_and_finished(server):
    job = server.submit(helpers.sleep_and_return, (0.5, "done"))
    assert job.wait(0.01) is False
    assert not job.finished
    assert job.wait(30) is True
    assert job.finished
    assert job() == "done"


def test_callback_runs_on_the_master_with_callbackargs(server):
    seen = []

    def collect(tag, result):
        seen.append((tag, result))

    jobs = [server.submit(helpers.helper_square, (i,), callback=collect, callbackargs=("sq",),
                          group="cb") for i in range(10)]
    server.wait("cb")
    assert sorted(seen) == sorted(("sq", i * i) for i in range(10))
    assert all(job.finished for job in jobs)
    assert [job() for job in jobs] == [i * i for i in range(10)]


def test_callback_of_a_job_done_before_submit_returns_still_runs(server, monkeypatch):
    # The job finishes (and the notifier thread hears of it) while submit() is still building
    # its Job: it used to be dropped, its callback never run and wait() never return.
    seen = []
    server.submit(helpers.helper_square, (1,), callback=seen.append)()  # notifier running
    built = ppmpi.server.Job.__init__

    def slow_init(self, *args, **kwargs):
        built(self, *args, **kwargs)
        time.sleep(0.05)

    monkeypatch.setattr(ppmpi.server.Job, "__init__", slow_init)
    for i in range(2, 5):
        server.submit(helpers.helper_square, (i,), callback=seen.append, group="early")
    waiter = threading.Thread(target=server.wait, args=("early",), daemon=True)
    waiter.start()
    waiter.join(timeout=30)
    assert not waiter.is_alive(), "server.wait() hung: a callback was lost"
    assert sorted(seen) == [1, 4, 9, 16]


def test_wait_for_one_group_only(server):
    slow = server.submit(helpers.sleep_and_return, (1.0, "slow"), group="slow")
    fast = [server.submit(helpers.helper_square, (i,), group="fast") for i in range(4)]
    server.wait("fast")
    assert all(j.finished for j in fast)
    assert not slow.finished
    server.wait()
    assert slow.finished


def test_template(server):
    template = ppmpi.Template(server, helpers.sum_primes, (helpers.isprime,), ("math",))
    assert template.submit(100)() == helpers.sum_primes(100)


def test_stats_and_print_stats(server, capsys):
    for job in [server.submit(helpers.helper_square, (i,)) for i in range(6)]:
        job()
    stats = server.get_stats()
    assert stats and all(":" in name for name in stats)
    assert sum(s.njobs for s in stats.values()) >= 6
    server.print_stats()
    out = capsys.readouterr().out
    assert "Job execution statistics:" in out
    assert " job count | % of all jobs | job time sum | time per job | job server" in out
    assert "cores" in out


def test_get_ncpus_and_active_nodes(server):
    assert server.get_ncpus() == 2
    nodes = server.get_active_nodes()
    assert sum(nodes.values()) >= 2
