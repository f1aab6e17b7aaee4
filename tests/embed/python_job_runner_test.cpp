// PythonJobRunner (python_job_runner.hpp) driven directly, the way a worker's job thread
// drives it: configure(Welcome), define(key, bundle), run(Task, args). Bundles and args are made
// here in the embedded interpreter exactly as the master makes them (ppmpi/_serialize.py):
// cloudpickle.dumps((func, depfuncs, modules, fresh, init)) and cloudpickle.dumps(args_tuple).
//
// GIL discipline: the test thread does not hold the GIL (embed_main.cpp released it); the
// runner takes it per call, and test code takes it (py::gil_scoped_acquire) only around its
// own Python work. Every py::object lives inside such a scope.
#include "ppmpi/core/errors.hpp"
#include "ppmpi/python/python_job_runner.hpp"

#include <catch2/catch.hpp>
#include <pybind11/embed.h>
#include <pybind11/stl.h>
#include <string>
#include <vector>

namespace py = pybind11;
using namespace py::literals;

namespace {

using ppmpi::Bytes;
using ppmpi::RunOutcome;
using ppmpi::ResultStatus;

constexpr std::int64_t kWorkerId = 5;
// A module name that cannot be imported: cloudpickle then pickles the functions by value, as
// it does for a driver's __main__ functions.
constexpr const char* kJobModule = "ppmpi_embed_test_jobs";

// Runs `source` in a fresh namespace and returns that namespace. GIL must be held.
py::dict exec_namespace(const std::string& source) {
    py::dict ns;
    ns["__name__"] = kJobModule;
    py::exec(source, ns);
    return ns;
}

struct BundleSpec {
    BundleSpec(std::string source_, std::string func_)
        : source(std::move(source_)), func(std::move(func_)) {}
    BundleSpec& with_modules(std::vector<std::string> m) {
        modules = std::move(m);
        return *this;
    }
    BundleSpec& with_deps(std::string source_, std::vector<std::string> names) {
        dep_source = std::move(source_);
        deps = std::move(names);
        return *this;
    }
    BundleSpec& with_fresh(bool f) {
        fresh = f;
        return *this;
    }

    std::string source;     // defines the job function
    std::string func;       // its name
    std::string dep_source; // defines the depfuncs, in a namespace of their own
    std::vector<std::string> deps;
    std::vector<std::string> modules;
    bool fresh = false;
};

// The pickled (func, depfuncs, modules, fresh, init) bundle (init: no Executor initializer).
Bytes make_bundle(const BundleSpec& spec) {
    py::gil_scoped_acquire gil;
    py::dict ns = exec_namespace(spec.source);
    py::list deps;
    if (!spec.deps.empty()) {
        py::dict dep_ns = exec_namespace(spec.dep_source);
        for (const std::string& name : spec.deps)
            deps.append(dep_ns[name.c_str()]);
    }
    py::list modules;
    for (const std::string& m : spec.modules)
        modules.append(m);
    py::object cloudpickle = py::module_::import("cloudpickle");
    py::tuple bundle =
        py::make_tuple(ns[spec.func.c_str()], py::tuple(deps), py::tuple(modules), spec.fresh,
                       py::none());
    return cloudpickle.attr("dumps")(bundle).cast<std::string>();
}

// The pickled args tuple: `expression` is Python that evaluates to a tuple.
Bytes make_args(const std::string& expression) {
    py::gil_scoped_acquire gil;
    py::object args = py::eval(expression);
    REQUIRE(py::isinstance<py::tuple>(args));
    return py::module_::import("cloudpickle").attr("dumps")(args).cast<std::string>();
}

// pickle.loads(payload): (result, output) or (report, output). GIL must be held.
py::tuple load(const Bytes& payload) {
    return py::module_::import("pickle").attr("loads")(py::bytes(payload));
}

std::string str(py::handle h) {
    return py::str(h).cast<std::string>();
}

// A runner configured like a worker adopted by a master whose sys.path has the build tree.
struct Worker {
    ppmpi::PythonJobRunner runner;

    explicit Worker(std::string cwd = {}) {
        ppmpi::Welcome welcome;
        welcome.worker_id = kWorkerId;
        welcome.sys_path = {PPMPI_BUILD_PYTHON_DIR};
        welcome.cwd = std::move(cwd);
        runner.configure(welcome);
    }

    void define(const std::string& key, const BundleSpec& spec) {
        runner.define(key, make_bundle(spec));
    }

    RunOutcome run(ppmpi::JobId job, const std::string& key, const std::string& args) {
        return runner.run(ppmpi::Task{job, key}, make_args(args), {}, std::nullopt);
    }
};

// What an error payload says, read with the GIL held and kept as C++ values.
struct Report {
    std::string type, message, traceback, where, output;
    bool has_exc = false;
};

Report read_report(const RunOutcome& outcome) {
    REQUIRE(outcome.status == ResultStatus::Error);
    py::gil_scoped_acquire gil;
    py::tuple loaded = load(outcome.payload);
    REQUIRE(loaded.size() == 2);
    py::dict report = loaded[0];
    Report r;
    r.type = str(report["type"]);
    r.message = str(report["message"]);
    r.traceback = str(report["traceback"]);
    r.where = str(report["where"]);
    r.output = str(loaded[1]);
    r.has_exc = !report["exc"].is_none();
    return r;
}

// isinstance(pickle.loads(report['exc']), <module>.<cls>) for an error outcome.
bool exc_is_instance(const RunOutcome& outcome, const char* module, const char* cls) {
    py::gil_scoped_acquire gil;
    py::dict report = load(outcome.payload)[0];
    if (report["exc"].is_none()) return false;
    py::object exc = py::module_::import("pickle").attr("loads")(report["exc"]);
    py::object type = py::module_::import(module).attr(cls);
    return py::isinstance(exc, type);
}

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

} // namespace

TEST_CASE("a job's result and its printed output come back", "[runner]") {
    Worker w;
    w.define("add", BundleSpec(R"(
import sys
def add(a, b):
    print("adding", a, b)
    print("to stderr", file=sys.stderr)
    return a + b
)",
                               "add"));
    RunOutcome out = w.run(1, "add", "(3, 4)");
    REQUIRE(out.status == ResultStatus::Ok);
    CHECK(out.seconds >= 0.0);
    py::gil_scoped_acquire gil;
    py::tuple loaded = load(out.payload);
    REQUIRE(loaded.size() == 2);
    CHECK(loaded[0].cast<int>() == 7);
    CHECK(str(loaded[1]) == "adding 3 4\nto stderr\n");
}

TEST_CASE("jobs of one function run many times with different args", "[runner]") {
    Worker w;
    w.define("sq", BundleSpec("def sq(x):\n    return x * x\n", "sq"));
    for (int i = 0; i < 20; ++i) {
        RunOutcome out = w.run(100 + i, "sq", "(" + std::to_string(i) + ",)");
        REQUIRE(out.status == ResultStatus::Ok);
        py::gil_scoped_acquire gil;
        CHECK(load(out.payload)[0].cast<int>() == i * i);
    }
}

TEST_CASE("large args and results travel intact", "[runner]") {
    Worker w;
    w.define("rev", BundleSpec("def rev(b):\n    return b[::-1]\n", "rev"));
    RunOutcome out = w.run(2, "rev", "(bytes(range(256)) * 8192,)"); // 2 MiB
    REQUIRE(out.status == ResultStatus::Ok);
    py::gil_scoped_acquire gil;
    py::bytes expected = py::eval("bytes(range(256))[::-1] * 8192");
    CHECK(py::object(load(out.payload)[0]).equal(expected));
}

TEST_CASE("the job's stdout and stderr are restored after the job", "[runner]") {
    std::string before;
    {
        py::gil_scoped_acquire gil;
        before = str(py::repr(py::module_::import("sys").attr("stdout")));
    }
    Worker w;
    w.define("noisy",
             BundleSpec("def noisy():\n    print('x')\n    raise RuntimeError('boom')\n", "noisy"));
    RunOutcome out = w.run(3, "noisy", "()");
    CHECK(read_report(out).output == "x\n");
    py::gil_scoped_acquire gil;
    py::module_ sys = py::module_::import("sys");
    CHECK(str(py::repr(sys.attr("stdout"))) == before);
    CHECK(sys.attr("stdout").is(sys.attr("stderr")) == false);
}

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
    py::object exc = py::module_::import("pickle").attr("loads")(load(out.payload)[0]["exc"]);
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
    py::object exc = py::module_::import("pickle").attr("loads")(load(out.payload)[0]["exc"]);
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

TEST_CASE("modules are imported into the function's namespace", "[runner][modules]") {
    Worker w;
    SECTION("import math") {
        w.define(
            "root",
            BundleSpec("def root(x):\n    return math.sqrt(x)\n", "root").with_modules({"math"}));
        RunOutcome out = w.run(5, "root", "(9,)");
        REQUIRE(out.status == ResultStatus::Ok);
        py::gil_scoped_acquire gil;
        CHECK(load(out.payload)[0].cast<double>() == 3.0);
    }
    SECTION("from x import y") {
        w.define("base", BundleSpec("def base(p):\n    return basename(p)\n", "base")
                             .with_modules({"from os.path import basename"}));
        RunOutcome out = w.run(6, "base", "('/a/b/c.txt',)");
        REQUIRE(out.status == ResultStatus::Ok);
        py::gil_scoped_acquire gil;
        CHECK(str(load(out.payload)[0]) == "c.txt");
    }
    SECTION("without the module the name is undefined") {
        w.define("bare", BundleSpec("def bare(x):\n    return zlib.crc32(x)\n", "bare"));
        Report r = read_report(w.run(7, "bare", "(b'abc',)"));
        CHECK(r.type == "NameError");
        CHECK(contains(r.message, "zlib"));
    }
}

TEST_CASE("a depfunc is callable by name from the job function", "[runner][depfuncs]") {
    Worker w;
    // The depfunc is defined apart from the function, so the function's pickled globals do
    // not carry it: only the depfuncs tuple does.
    w.define("outer", BundleSpec("def outer(x):\n    return helper(x) + 1\n", "outer")
                          .with_deps("def helper(x):\n    return twice(x) * 10\n"
                                     "def twice(x):\n    return 2 * x\n",
                                     {"helper", "twice"}));
    RunOutcome out = w.run(8, "outer", "(3,)");
    REQUIRE(out.status == ResultStatus::Ok);
    {
        py::gil_scoped_acquire gil;
        CHECK(load(out.payload)[0].cast<int>() == 61);
    }
    // And without the depfunc: NameError at run time.
    w.define("lonely", BundleSpec("def lonely(x):\n    return helper(x)\n", "lonely"));
    Report r = read_report(w.run(9, "lonely", "(3,)"));
    CHECK(r.type == "NameError");
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
    // The runner is still fine.
    w.define("ok", BundleSpec("def ok():\n    return 'fine'\n", "ok"));
    RunOutcome next = w.run(11, "ok", "()");
    REQUIRE(next.status == ResultStatus::Ok);
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
    // We are still here, and the runner still runs jobs.
    w.define("after", BundleSpec("def after():\n    return 5\n", "after"));
    RunOutcome next = w.run(79, "after", "()");
    REQUIRE(next.status == ResultStatus::Ok);
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

TEST_CASE("a task for a key never defined is an error outcome", "[runner]") {
    Worker w;
    Report r = read_report(w.run(15, "never-defined", "()"));
    CHECK(r.type == "RuntimeError");
    CHECK(contains(r.message, "never-defined"));
}

TEST_CASE("a cached function keeps its module state; a fresh one does not", "[runner]") {
    const char* counter = R"(
count = 0
def bump():
    global count
    count += 1
    return count
)";
    Worker w;
    auto twice = [&](const std::string& key, bool fresh) {
        w.define(key, BundleSpec(counter, "bump").with_fresh(fresh));
        std::vector<int> seen;
        for (ppmpi::JobId job : {20, 21}) {
            RunOutcome out = w.run(job, key, "()");
            REQUIRE(out.status == ResultStatus::Ok);
            py::gil_scoped_acquire gil;
            seen.push_back(load(out.payload)[0].cast<int>());
        }
        return seen;
    };
    CHECK(twice("cached", false) == std::vector<int>{1, 2});
    CHECK(twice("fresh", true) == std::vector<int>{1, 1});
}

TEST_CASE("defining a key again replaces its function", "[runner]") {
    Worker w;
    w.define("k", BundleSpec("def f():\n    return 'old'\n", "f"));
    RunOutcome first = w.run(30, "k", "()");
    w.define("k", BundleSpec("def f():\n    return 'new'\n", "f"));
    RunOutcome second = w.run(31, "k", "()");
    REQUIRE(first.status == ResultStatus::Ok);
    REQUIRE(second.status == ResultStatus::Ok);
    py::gil_scoped_acquire gil;
    CHECK(str(load(first.payload)[0]) == "old");
    CHECK(str(load(second.payload)[0]) == "new");
}

TEST_CASE("a job's seconds measure its run time", "[runner]") {
    Worker w;
    w.define("nap",
             BundleSpec("import time\ndef nap(s):\n    time.sleep(s)\n    return s\n", "nap"));
    RunOutcome out = w.run(32, "nap", "(0.2,)");
    REQUIRE(out.status == ResultStatus::Ok);
    CHECK(out.seconds >= 0.19);
    CHECK(out.seconds < 5.0);
}

TEST_CASE("configure puts the master's sys.path first and applies its cwd", "[runner]") {
    std::string saved_cwd;
    {
        py::gil_scoped_acquire gil;
        saved_cwd = str(py::module_::import("os").attr("getcwd")());
    }
    {
        Worker w("/tmp");
        w.define("where",
                 BundleSpec("import os, sys\ndef where():\n    return os.getcwd(), sys.path[0]\n",
                            "where"));
        RunOutcome out = w.run(33, "where", "()");
        REQUIRE(out.status == ResultStatus::Ok);
        py::gil_scoped_acquire gil;
        py::tuple result = load(out.payload)[0];
        CHECK(str(result[0]) == "/tmp");
        CHECK(str(result[1]) == PPMPI_BUILD_PYTHON_DIR);
        // Configuring twice does not repeat the entry.
        py::list path = py::module_::import("sys").attr("path");
        int copies = 0;
        for (py::handle entry : path)
            if (str(entry) == PPMPI_BUILD_PYTHON_DIR) ++copies;
        CHECK(copies == 1);
    }
    py::gil_scoped_acquire gil;
    py::module_::import("os").attr("chdir")(saved_cwd);
}

TEST_CASE("define or run before configure is an internal error", "[runner]") {
    ppmpi::PythonJobRunner runner;
    CHECK_THROWS_AS(runner.define("k", "not a bundle"), ppmpi::InternalError);
    CHECK_THROWS_AS(runner.run(ppmpi::Task{1, "k"}, "x", {}, std::nullopt), ppmpi::InternalError);
}

TEST_CASE("configure with a cwd that does not exist throws PpmpiError", "[runner]") {
    ppmpi::PythonJobRunner runner;
    ppmpi::Welcome welcome;
    welcome.sys_path = {PPMPI_BUILD_PYTHON_DIR};
    welcome.cwd = "/nonexistent/ppmpi/dir";
    CHECK_THROWS_AS(runner.configure(welcome), ppmpi::PpmpiError);
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
