#include "runner_rig.hpp"

#include <catch2/catch.hpp>

namespace embed_rig {

namespace {
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
}  // namespace

Bytes make_bundle(const BundleSpec& spec) {
    py::gil_scoped_acquire gil;
    py::dict ns = exec_namespace(spec.source);
    py::list deps;
    if (!spec.deps.empty()) {
        py::dict dep_ns = exec_namespace(spec.dep_source);
        for (const std::string& name : spec.deps) deps.append(dep_ns[name.c_str()]);
    }
    py::list modules;
    for (const std::string& m : spec.modules) modules.append(m);
    py::object cloudpickle = py::module_::import("cloudpickle");
    py::tuple bundle = py::make_tuple(ns[spec.func.c_str()], py::tuple(deps), py::tuple(modules),
                                      spec.fresh, py::none());
    return cloudpickle.attr("dumps")(bundle).cast<std::string>();
}

Bytes make_args(const std::string& expression) {
    py::gil_scoped_acquire gil;
    py::object args = py::eval(expression);
    REQUIRE(py::isinstance<py::tuple>(args));
    return py::module_::import("cloudpickle").attr("dumps")(args).cast<std::string>();
}

py::tuple load(const Bytes& payload) {
    return py::module_::import("pickle").attr("loads")(py::bytes(payload));
}

std::string str(py::handle h) { return py::str(h).cast<std::string>(); }

bool contains(const std::string& haystack, const std::string& needle) {
    return haystack.find(needle) != std::string::npos;
}

Worker::Worker(std::string cwd) {
    ppmpi::Welcome welcome;
    welcome.worker_id = kWorkerId;
    welcome.sys_path = {PPMPI_BUILD_PYTHON_DIR};
    welcome.cwd = std::move(cwd);
    runner.configure(welcome);
}

void Worker::define(const std::string& key, const BundleSpec& spec) {
    runner.define(key, make_bundle(spec));
}

RunOutcome Worker::run(ppmpi::JobId job, const std::string& key, const std::string& args) {
    return runner.run(ppmpi::Task{job, key}, make_args(args), {}, std::nullopt);
}

void Worker::require_still_runs(ppmpi::JobId job) {
    define("alive", BundleSpec("def alive():\n    return 'fine'\n", "alive"));
    RunOutcome next = run(job, "alive", "()");
    REQUIRE(next.status == ResultStatus::Ok);
}

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

py::object load_exc(const RunOutcome& outcome) {
    py::object exc = load(outcome.payload)[0]["exc"];
    return exc.is_none() ? exc : py::module_::import("pickle").attr("loads")(exc);
}

bool exc_is_instance(const RunOutcome& outcome, const char* module, const char* cls) {
    py::gil_scoped_acquire gil;
    py::object exc = load_exc(outcome);
    return !exc.is_none() && py::isinstance(exc, py::module_::import(module).attr(cls));
}

}  // namespace embed_rig
