// ppmpi/worker/executor.hpp: what runs a job on a worker, seen from the worker's comm loop.
//
// The real one is PythonExecutor (embedded CPython, python_executor.hpp); tests use fakes, so
// the worker loop is tested without Python. All calls come from the executor thread (the
// process's main thread, which holds the interpreter), never from the comm thread.
#pragma once

#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

struct ExecOutcome {
    ResultStatus status = ResultStatus::Ok;
    Bytes payload;  // pickled result or exception report
    double seconds = 0.0;
    Buffers buffers = {};  // the result's out-of-band buffers (large arrays), sent without a copy
};

class Executor {
  public:
    virtual ~Executor() = default;
    // Called once, before the Welcome, while the comm thread is still starting MPI (which takes
    // ~0.25 s): loads what every job needs, so the first job does not wait for it. Best
    // effort: what fails here is done again, and reported, by configure().
    virtual void prepare() {}
    // The master adopted this worker: apply its sys.path and working directory.
    virtual void configure(const Welcome& welcome) = 0;
    // A function bundle for later tasks that name `key`.
    virtual void define(const std::string& key, Bytes bundle) = 0;
    // Runs one job. Errors in the job are an outcome with status Error, never an exception;
    // an exception here means the executor itself is broken and the worker ends.
    virtual ExecOutcome run(const Task& task, Bytes args, Buffers arg_buffers) = 0;
};

}  // namespace ppmpi
