"""Bad input and failing jobs: a clear exception each, and the server keeps serving."""
import threading

import helpers
import ppmpi
import pytest


@pytest.mark.parametrize("name", ["args", "depfuncs", "modules", "callbackargs"])
def test_non_tuple_arguments_raise_type_error(server, name):
    with pytest.raises(TypeError, match=name):
        server.submit(helpers.helper_square, **{name: [1]})


def test_module_entries_must_be_strings(server):
    with pytest.raises(TypeError, match="modules"):
        server.submit(helpers.helper_square, (1,), modules=(42,))


def test_non_callable_function(server):
    with pytest.raises(TypeError, match="callable"):
        server.submit(42, (1,))


def test_unpicklable_argument_is_named_at_submit(server):
    lock = threading.Lock()
    with pytest.raises(TypeError, match=r"argument 1 of helper_square\(\).*lock"):
        server.submit(helpers.helper_square, (1, lock))


def test_unpicklable_function_is_named_at_submit(server):
    lock = threading.Lock()

    def holds_a_lock(x):
        with lock:
            return x

    with pytest.raises(TypeError, match="holds_a_lock"):
        server.submit(holds_a_lock, (1,))


def test_remote_exception_keeps_its_type_and_traceback(server):
    job = server.submit(helpers.fail, (ValueError, "bad value 42"))
    with pytest.raises(ValueError, match="bad value 42") as info:
        job()
    cause = info.value.__cause__
    assert isinstance(cause, ppmpi.RemoteTraceback)
    assert "Worker " in str(cause) and "fail" in str(cause) and "Traceback" in str(cause)
    assert "raise kind(message)" in str(cause)


def test_unpicklable_result_fails_at_job_naming_the_job(server):
    job = server.submit(helpers.make_generator, (3,))
    with pytest.raises(ppmpi.ResultPicklingError, match=rf"job {job.tid} \(make_generator\)"):
        job()


def test_failed_module_import_raises_import_error_at_job(server):
    job = server.submit(helpers.helper_square, (3,), modules=("no_such_module_xyz",))
    with pytest.raises(ImportError, match="no_such_module_xyz"):
        job()


def test_sys_exit_in_a_job_is_an_exception_not_a_dead_worker(server):
    with pytest.raises(ppmpi.JobExit, match="sys.exit"):
        server.submit(helpers.exit_job, (3,))()
    assert server.submit(helpers.helper_square, (9,))() == 81


def test_server_keeps_serving_after_errors(server):
    bad = [server.submit(helpers.fail, (KeyError, str(i))) for i in range(5)]
    good = [server.submit(helpers.helper_square, (i,)) for i in range(5)]
    for job in bad:
        with pytest.raises(KeyError):
            job()
    assert [job() for job in good] == [i * i for i in range(5)]


def test_raising_callback_does_not_hang_wait(server, caplog):
    def broken(result):
        raise RuntimeError("callback broke")

    job = server.submit(helpers.helper_square, (3,), callback=broken, group="broken")
    server.wait("broken")
    assert job.finished
    assert job() == 9
    assert "callback" in caplog.text


@pytest.mark.parametrize("ncpus,error", [(-1, ValueError), ("many", TypeError),
                                         (2.5, TypeError), (True, TypeError)])
def test_bad_ncpus(ncpus, error):
    with pytest.raises(error, match="ncpus"):
        ppmpi.Server(ncpus)


def test_bad_ppservers_and_secret_are_named():
    with pytest.raises(TypeError, match="ppservers"):
        ppmpi.Server(1, ppservers=["host:1"])
    with pytest.raises(ValueError, match="host:port.*port must be a number"):
        ppmpi.Server(1, ppservers=("host:port",))
    with pytest.raises(ValueError, match="ppservers entries"):
        ppmpi.Server(1, ppservers=(35000,))
    with pytest.raises(TypeError, match="secret"):
        ppmpi.Server(1, secret=42)
    assert not hasattr(ppmpi.Server, "default_secret")  # pp's public default secret is gone


def test_ppservers_entries_are_read_as_pp_reads_them():
    from ppmpi.remote.servers import parse_address
    assert parse_address("node7") == ("node7", 60000)
    assert parse_address(" node7:35000 ") == ("node7", 35000)
    assert parse_address("[::1]:35000") == ("::1", 35000)
    assert parse_address("") == ("127.0.0.1", 60000)  # the seed's ppservers=('',)
    assert parse_address(":35000") == ("127.0.0.1", 35000)
    with pytest.raises(ValueError, match="port must be a number"):
        parse_address("node7:0")


def test_submit_after_destroy(fresh_server):
    fresh_server.destroy()
    with pytest.raises(ppmpi.DestroyedServerError):
        fresh_server.submit(helpers.helper_square, (1,))
    assert issubclass(ppmpi.DestroyedServerError, RuntimeError)


def test_destroy_with_jobs_in_flight_fails_them_without_hanging(fresh_server):
    jobs = [fresh_server.submit(helpers.sleep_and_return, (0.3, i)) for i in range(8)]
    fresh_server.destroy()
    for job in jobs:
        try:
            job()
        except ppmpi.DestroyedServerError as exc:
            assert "destroyed" in str(exc)


def test_every_outcome_code_of_the_one_table_has_its_meaning_in_python():
    """core/outcomes.hpp declares the codes; Python reads them from _core.OUTCOMES."""
    import concurrent.futures

    from ppmpi import _core, _serialize, errors

    codes = _core.OUTCOMES
    assert sorted(codes.values()) == list(range(len(codes)))
    assert _serialize.OK == codes["Ok"] and _serialize.REMOTE_ERROR == codes["RemoteError"]
    expected = {"Destroyed": ppmpi.DestroyedServerError, "WorkerLost": errors.WorkerLost,
                "Timeout": errors.JobTimeout, "Cancelled": concurrent.futures.CancelledError,
                "NoWorkers": errors.NoWorkers}
    assert set(codes) == {"Ok", "RemoteError"} | set(expected)
    for name, kind in expected.items():
        error = _serialize.outcome_error(codes[name], "why", "job 1")
        assert type(error) is kind, name


def test_the_contract_comes_from_cpp_once():
    """Python takes what C++ declares from _core (contract_bindings.cpp), never its own copy:
    the enum beside the code table, the payload bound, the tunables' defaults, the taken
    outcome's fields, and C++'s destroyed error as ppmpi.DestroyedServerError."""
    from ppmpi import _core, _serialize, _tunables

    assert {m.name: int(m.value) for m in _core.Outcome.__members__.values()} == _core.OUTCOMES
    assert _serialize.MAX_PAYLOAD_BYTES == _core.MAX_PAYLOAD_BYTES == 2**31 - 1 - 64 * 1024
    assert _core.DEFAULTS["heartbeat_ms"] > 0 and _core.DEFAULTS["master_timeout_ms"] > 0
    assert _core.TakenOutcome._fields == ("outcome", "payload", "message", "worker", "seconds",
                                          "buffers")
    assert _core.DestroyedError is ppmpi.DestroyedServerError
    with pytest.raises(ValueError, match="PPMPI_HEARTBEAT_MS='soon': expected an integer"):
        with pytest.MonkeyPatch.context() as env:
            env.setenv("PPMPI_HEARTBEAT_MS", "soon")
            _tunables.from_env("PPMPI_HEARTBEAT_MS", "heartbeat_ms")


def test_a_taken_outcome_has_named_fields():
    import pickle

    with ppmpi.Server(1) as server:
        job = server.submit(divmod, (7, 2))
        job.wait(60)
        taken = server._pool.take(job.tid)
        assert taken.outcome == ppmpi._core.Outcome.Ok.value and taken.message == ""
        assert pickle.loads(taken.payload)[0] == (3, 1) and taken.buffers == []
        assert ":" in taken.worker and 0.0 <= taken.seconds < 60.0


def test_the_core_stub_names_everything_core_exports():
    """python/ppmpi/_core.pyi lists every public name of _core and every method of its
    classes, and nothing that is not there."""
    import ast
    import pathlib

    from ppmpi import _core

    stub = pathlib.Path(ppmpi.__file__).with_name("_core.pyi")
    tree = ast.parse(stub.read_text())
    typing_names = {"Dict", "List", "NamedTuple", "Optional", "Tuple"}
    named = set()
    for node in tree.body:
        if isinstance(node, (ast.ClassDef, ast.FunctionDef)):
            named.add(node.name)
        elif isinstance(node, ast.AnnAssign):
            named.add(node.target.id)
        elif isinstance(node, ast.ImportFrom):
            named |= {alias.asname or alias.name for alias in node.names}
    assert named - typing_names == {name for name in dir(_core) if not name.startswith("_")}
    classes = ("Master", "PoolHandle", "LinkHandshake")
    for node in tree.body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            methods = {f.name for f in node.body if isinstance(f, ast.FunctionDef)} - {"__init__"}
            real = {k for k in vars(getattr(_core, node.name)) if not k.startswith("_")}
            assert methods == real, node.name
