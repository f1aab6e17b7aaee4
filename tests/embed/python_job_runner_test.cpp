// PythonJobRunner (python_job_runner.hpp) driven directly, the way a worker's job thread
// drives it: configure(Welcome), define(key, bundle), run(Task, args); the rig is runner_rig.hpp.
// Here: what a job returns, prints and imports, caching, configure. Error outcomes:
// python_job_runner_errors_test.cpp.
#include <catch2/catch.hpp>

#include <string>

#include "ppmpi/core/errors.hpp"
#include "runner_rig.hpp"

namespace py = pybind11;
using namespace py::literals;
using namespace embed_rig;

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
    RunOutcome out = w.run(2, "rev", "(bytes(range(256)) * 8192,)");  // 2 MiB
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
