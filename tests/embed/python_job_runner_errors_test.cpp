// PythonJobRunner's error outcomes: a job's exception, exit, unpicklable result or broken
// stdout is an outcome naming the job, and the runner goes on (runner_rig.hpp has the rig).
#include <catch2/catch.hpp>

#include <string>

#include "ppmpi/core/errors.hpp"
#include "runner_rig.hpp"

namespace py = pybind11;
using namespace py::literals;
using namespace embed_rig;

TEST_CASE("a job's exception keeps its type, with a traceback naming the job", "[runner]") {
    Worker w;
    w.define("fail", BundleSpec(R"(
def fail(x):
    print("about to fail")
    raise ValueError(f"bad {x}")
)",
                                "fail"));
    RunOutcome out = w.run(42, "fail", "(9,)");
    Report r = read_report(out);
    CHECK(r.type == "ValueError");
    CHECK(r.message == "bad 9");
    CHECK(r.output == "about to fail\n");
    CHECK(r.has_exc);
    CHECK(contains(r.traceback, "job 42"));
    CHECK(contains(r.traceback, "fail"));
    CHECK(contains(r.traceback, "ValueError: bad 9"));
    CHECK(contains(r.where, ":" + std::to_string(kWorkerId)));
    CHECK(contains(r.traceback, r.where));
    CHECK(exc_is_instance(out, "builtins", "ValueError"));
    py::gil_scoped_acquire gil;
    py::object exc = load_exc(out);
    CHECK(str(exc.attr("args")[py::int_(0)]) == "bad 9");
}

TEST_CASE("an exception class defined with the job comes back by value", "[runner]") {
    Worker w;
    w.define("custom", BundleSpec(R"(
class CustomError(Exception):
    pass
def custom():
    raise CustomError("mine")
)",
                                  "custom"));
    RunOutcome out = w.run(43, "custom", "()");
    Report r = read_report(out);
    CHECK(r.type == "CustomError");
    CHECK(r.message == "mine");
    REQUIRE(r.has_exc);
    py::gil_scoped_acquire gil;
    py::object exc = load_exc(out);
    CHECK(str(py::type::of(exc).attr("__name__")) == "CustomError");
    CHECK(py::isinstance(exc, py::module_::import("builtins").attr("Exception")));
}

TEST_CASE("an exception that does not unpickle is reported by type and message", "[runner]") {
    Worker w;
    // Pickles (args = ('x',)) but unpickling calls __init__('x') without `b`: TypeError.
    w.define("odd", BundleSpec(R"(
class TwoArgError(Exception):
    def __init__(self, a, b):
        super().__init__(a)
def odd():
    raise TwoArgError("x", "y")
)",
                               "odd"));
    Report r = read_report(w.run(44, "odd", "()"));
    CHECK(r.type == "TwoArgError");
    CHECK(r.message == "x");
    CHECK_FALSE(r.has_exc);
    CHECK(contains(r.traceback, "job 44"));
}

TEST_CASE("a missing module fails the job at run, not at define", "[runner][modules]") {
    Worker w;
    REQUIRE_NOTHROW(w.define("needs", BundleSpec("def needs():\n    return 1\n", "needs")
                                          .with_modules({"ppmpi_no_such_module_xyz"})));
    RunOutcome out = w.run(10, "needs", "()");
    Report r = read_report(out);
    CHECK((r.type == "ModuleNotFoundError" || r.type == "ImportError"));
    CHECK(contains(r.message, "ppmpi_no_such_module_xyz"));
    CHECK(contains(r.traceback, "job 10"));
    CHECK(exc_is_instance(out, "builtins", "ImportError"));
    w.require_still_runs(11);
}

TEST_CASE("sys.exit in a job is a JobExit error, not a process exit", "[runner][exit]") {
    Worker w;
    w.define(
        "quit",
        BundleSpec("import sys\ndef quit(code):\n    print('bye')\n    sys.exit(code)\n", "quit"));
    RunOutcome out = w.run(77, "quit", "(3,)");
    Report r = read_report(out);
    CHECK(r.type == "JobExit");
    CHECK(contains(r.message, "job 77"));
    CHECK(contains(r.message, "sys.exit(3)"));
    CHECK(r.output == "bye\n");
    CHECK(exc_is_instance(out, "ppmpi.errors", "JobExit"));

    SECTION("KeyboardInterrupt likewise") {
        w.define("intr", BundleSpec("def intr():\n    raise KeyboardInterrupt\n", "intr"));
        RunOutcome ki = w.run(78, "intr", "()");
        Report k = read_report(ki);
        CHECK(k.type == "JobExit");
        CHECK(contains(k.message, "KeyboardInterrupt"));
        CHECK(exc_is_instance(ki, "ppmpi.errors", "JobExit"));
    }
    w.require_still_runs(79);  // and this process is still here
}

TEST_CASE("an unpicklable result is a ResultPicklingError naming the job", "[runner][pickle]") {
    Worker w;
    SECTION("a generator") {
        w.define("gen",
                 BundleSpec("def gen(n):\n    print('made')\n    return (i for i in range(n))\n",
                            "gen"));
        RunOutcome out = w.run(13, "gen", "(4,)");
        Report r = read_report(out);
        CHECK(r.type == "ResultPicklingError");
        CHECK(contains(r.message, "job 13"));
        CHECK(contains(r.message, "gen"));
        CHECK(contains(r.message, "generator"));
        CHECK(r.output == "made\n");
        CHECK(exc_is_instance(out, "ppmpi.errors", "ResultPicklingError"));
        CHECK(exc_is_instance(out, "builtins", "TypeError"));
    }
    SECTION("an object holding a lock and a lambda") {
        w.define("locked", BundleSpec(R"(
import threading
class Holder:
    def __init__(self):
        self.lock = threading.Lock()
        self.fn = lambda: 1
def locked():
    return Holder()
)",
                                      "locked"));
        RunOutcome out = w.run(14, "locked", "()");
        Report r = read_report(out);
        CHECK(r.type == "ResultPicklingError");
        CHECK(contains(r.message, "job 14"));
        CHECK(contains(r.message, "Holder"));
        CHECK(exc_is_instance(out, "ppmpi.errors", "ResultPicklingError"));
    }
}

// --- A job's own doing must never break the runner (job_runner.hpp: job errors are outcomes;
// an exception from run() means the runner itself is broken and the worker ends).

TEST_CASE("an exception whose __str__ fails is still an error outcome", "[runner]") {
    // The report renders the exception with str() and traceback formatting: both call __str__.
    Worker w;
    w.define("weird", BundleSpec(R"(
class Weird(Exception):
    def __str__(self):
        raise RuntimeError("no str for you")
def weird():
    raise Weird()
)",
                                 "weird"));
    RunOutcome out;
    REQUIRE_NOTHROW(out = w.run(50, "weird", "()"));
    Report r = read_report(out);
    CHECK(r.type == "Weird");
    CHECK(contains(r.traceback, "job 50"));
}

TEST_CASE("a job that closes sys.stdout is still an outcome", "[runner]") {
    // The job's sys.stdout is the capture buffer: closing it must not lose the output or the
    // result.
    Worker w;
    w.define("closer", BundleSpec("import sys\ndef closer():\n    sys.stdout.close()\n"
                                  "    return 1\n",
                                  "closer"));
    RunOutcome out;
    REQUIRE_NOTHROW(out = w.run(51, "closer", "()"));
    CHECK(out.status == ResultStatus::Ok);
    // And the process's own stdout is back in place and usable.
    py::gil_scoped_acquire gil;
    py::module_ sys = py::module_::import("sys");
    CHECK_FALSE(sys.attr("stdout").attr("closed").cast<bool>());
}
