// The embedded runner's test rig, for python_job_runner_test.cpp and its _errors_ sibling:
// a PythonJobRunner configured as a worker's, and bundles, args and error reports made and
// read in the embedded interpreter as the master makes and reads them (ppmpi/_serialize.py):
// cloudpickle.dumps((func, depfuncs, modules, fresh, init)) and cloudpickle.dumps(args_tuple).
//
// GIL discipline: the test thread does not hold the GIL (embed_main.cpp released it); the
// runner takes it per call, and test code takes it (py::gil_scoped_acquire) only around its
// own Python work. Every py::object lives inside such a scope.
#pragma once

#include <pybind11/embed.h>

#include <string>
#include <vector>

#include "ppmpi/python/python_job_runner.hpp"

// Hidden, as pybind11's own types are (a Worker holds a runner holding py::objects).
#pragma GCC visibility push(hidden)
namespace embed_rig {

namespace py = pybind11;

using ppmpi::Bytes;
using ppmpi::ResultStatus;
using ppmpi::RunOutcome;

inline constexpr std::int64_t kWorkerId = 5;  // the Welcome's: reports name it

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

    std::string source;      // defines the job function
    std::string func;        // its name
    std::string dep_source;  // defines the depfuncs, in a namespace of their own
    std::vector<std::string> deps;
    std::vector<std::string> modules;
    bool fresh = false;
};

// The pickled (func, depfuncs, modules, fresh, init) bundle (init: no Executor initializer).
Bytes make_bundle(const BundleSpec& spec);
// The pickled args tuple: `expression` is Python that evaluates to a tuple.
Bytes make_args(const std::string& expression);
// pickle.loads(payload): (result, output) or (report, output). GIL must be held.
py::tuple load(const Bytes& payload);
std::string str(py::handle h);
bool contains(const std::string& haystack, const std::string& needle);

// A runner configured like a worker adopted by a master whose sys.path has the build tree.
struct Worker {
    ppmpi::PythonJobRunner runner;

    explicit Worker(std::string cwd = {});
    void define(const std::string& key, const BundleSpec& spec);
    RunOutcome run(ppmpi::JobId job, const std::string& key, const std::string& args);
    // After a job's error: the runner runs the next job as usual.
    void require_still_runs(ppmpi::JobId job);
};

// What an error payload says, read with the GIL held and kept as C++ values.
struct Report {
    std::string type, message, traceback, where, output;
    bool has_exc = false;
};

Report read_report(const RunOutcome& outcome);
// pickle.loads(report['exc']) of an error outcome (None if it has none). GIL must be held.
py::object load_exc(const RunOutcome& outcome);
// isinstance(pickle.loads(report['exc']), <module>.<cls>) for an error outcome.
bool exc_is_instance(const RunOutcome& outcome, const char* module, const char* cls);

}  // namespace embed_rig
#pragma GCC visibility pop
