// ppmpi/python/python_job_runner.hpp: the JobRunner that runs jobs in CPython.
//
// It works in both kinds of worker: ppmpi-worker, whose main embeds the interpreter, and a
// python3 rank under mpirun, which is already an interpreter. The job logic itself (unpickle,
// import modules, call, capture output, pickle the result or the exception) lives in the
// Python module ppmpi._worker, imported (and exercised once) by prepare() while MPI starts,
// or, if the package is not on this process's own path yet, once the master's sys.path is
// known (Welcome).
// The GIL is held only while Python runs.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

#include "ppmpi/worker/job_runner.hpp"

namespace ppmpi {

// Hidden: it holds a pybind11 object, and pybind11 types are hidden in extension modules.
class __attribute__((visibility("hidden"))) PythonJobRunner : public JobRunner {
  public:
    PythonJobRunner() = default;
    ~PythonJobRunner() override;

    void attach(JobHost& host) override { host_ = &host; }
    void prepare() override;
    void configure(const Welcome& welcome) override;
    void define(const std::string& key, Bytes bundle) override;
    RunOutcome run(const Task& task, Bytes args, Buffers arg_buffers,
                   std::optional<std::int64_t> comm) override;

  private:
    pybind11::object module_;   // ppmpi._worker
    pybind11::object runtime_;  // ppmpi._worker.WorkerRuntime
    pybind11::object run_;      // its bound run()
    std::string last_key_;      // the function key of the last job, and as a Python str
    pybind11::object last_key_py_;
    JobHost* host_ = nullptr;  // a job's own submissions (ppmpi.get_server() on a worker)
    pybind11::object host_functions() const;
};

}  // namespace ppmpi
