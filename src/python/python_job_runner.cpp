#include "ppmpi/python/python_job_runner.hpp"

#include "ppmpi/core/frame.hpp"

#include <pybind11/stl.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/python/py_buffers.hpp"

namespace py = pybind11;

namespace ppmpi {

PythonJobRunner::~PythonJobRunner() {
    py::gil_scoped_acquire gil;
    run_ = py::object();
    last_key_py_ = py::object();
    runtime_ = py::object();
    module_ = py::object();
}

void PythonJobRunner::prepare() {
    py::gil_scoped_acquire gil;
    try {
        py::object module = py::module_::import("ppmpi._worker");
        module.attr("warm_up")();
        module_ = module;
    } catch (py::error_already_set&) {
        // Not importable from here yet (an embedded ppmpi-worker finds the package through
        // the driver's sys.path): configure() imports it, and reports a failure.
    }
}

void PythonJobRunner::configure(const Welcome& welcome) {
    py::gil_scoped_acquire gil;
    try {
        // The driver's sys.path first, so workers import what the driver imports.
        py::list path = py::module_::import("sys").attr("path");
        py::list merged;
        for (const std::string& entry : welcome.sys_path) merged.append(entry);
        for (py::handle entry : path)
            if (!merged.contains(entry)) merged.append(entry);
        py::module_::import("sys").attr("path") = merged;
        if (!welcome.cwd.empty()) py::module_::import("os").attr("chdir")(welcome.cwd);
        if (!module_) module_ = py::module_::import("ppmpi._worker");
        module_.attr("MAX_PAYLOAD_BYTES") = kMaxPayloadBytes;  // one bound, C++'s
        runtime_ = module_.attr("WorkerRuntime")(welcome.worker_id, host_functions());
        run_ = runtime_.attr("run");  // bound once, not looked up for every job
    } catch (py::error_already_set& e) {
        throw PpmpiError(std::string("could not set up the worker's Python: ") + e.what());
    }
}

// (submit, wait) for ppmpi._nested: a job's children go to the master through the worker loop;
// a wait runs, on this thread, the children that come back to it (the GIL released meanwhile).
py::object PythonJobRunner::host_functions() const {
    if (host_ == nullptr) return py::none();
    JobHost* host = host_;
    auto submit = [host](JobId parent, std::string key, py::bytes bundle, py::bytes args,
                         py::list buffers, double timeout) {
        return host->submit_child(parent, key, bundle, args, buffers_from_python(buffers), timeout);
    };
    auto wait = [host](JobId child, double timeout) -> py::object {
        std::optional<Message> outcome;
        {
            py::gil_scoped_release unlocked;
            outcome = host->wait_child(child, timeout);
        }
        if (!outcome) return py::none();
        const Result& result = std::get<Result>(outcome->header);
        return py::make_tuple(static_cast<int>(result.status), py::bytes(outcome->payload),
                              static_cast<int>(result.outcome),
                              buffers_to_python(std::move(outcome->buffers)));
    };
    return py::make_tuple(py::cpp_function(submit), py::cpp_function(wait));
}

void PythonJobRunner::define(const std::string& key, Bytes bundle) {
    py::gil_scoped_acquire gil;
    release_python_buffers();
    PPMPI_ENFORCE(runtime_, "define before configure");
    runtime_.attr("define")(key, py::bytes(bundle));
}

RunOutcome PythonJobRunner::run(const Task& task, Bytes args, Buffers arg_buffers,
                                std::optional<std::int64_t> comm) {
    py::gil_scoped_acquire gil;
    PPMPI_ENFORCE(runtime_, "task before configure");
    release_python_buffers();
    // run() never raises for a job's own errors: it returns (ok, payload, seconds, buffers).
    // The args as a read-only view of our buffer, not a copy: pickle reads bytes-like
    // objects, and `args` outlives the call.
    auto view = py::memoryview::from_memory(args.data(), static_cast<py::ssize_t>(args.size()));
    // A stream of jobs mostly runs one function: its key crosses into Python once.
    if (task.func_key != last_key_) {
        last_key_py_ = py::str(task.func_key);
        last_key_ = task.func_key;
    }
    py::object handle = comm ? py::object(py::int_(*comm)) : py::object(py::none());
    py::tuple out =
        run_(task.job_id, last_key_py_, view, buffers_to_python(std::move(arg_buffers)), handle);
    RunOutcome outcome;
    outcome.status = out[0].cast<bool>() ? ResultStatus::Ok : ResultStatus::Error;
    outcome.payload = out[1].cast<std::string>();
    outcome.seconds = out[2].cast<double>();
    outcome.buffers = buffers_from_python(out[3]);
    return outcome;
}

}  // namespace ppmpi
