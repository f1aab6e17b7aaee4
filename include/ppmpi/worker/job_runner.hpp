// ppmpi/worker/job_runner.hpp: what runs a job on a worker, seen from the worker's comm loop.
//
// The real one is PythonJobRunner (embedded CPython, python_job_runner.hpp); tests use fakes, so
// the worker loop is tested without Python. All calls come from the job thread (the
// process's main thread, which holds the interpreter), never from the comm thread.
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

struct RunOutcome {
    ResultStatus status = ResultStatus::Ok;
    Bytes payload;  // pickled result or exception report
    double seconds = 0.0;
    Buffers buffers = {};  // the result's out-of-band buffers (large arrays), sent without a copy
};

// What a running job may ask of its worker (nested jobs, protocol step 8); WorkerHost.
class JobHost {
  public:
    virtual ~JobHost() = default;
    // Sends the master a child job of `parent` (running here); returns its id.
    virtual JobId submit_child(JobId parent, const std::string& key, Bytes bundle, Bytes args,
                               Buffers buffers, double timeout) = 0;
    // Up to `timeout` s for the child's Result (nullopt: not yet), running on this thread the
    // children of this worker's jobs that the master sends here meanwhile.
    virtual std::optional<Message> wait_child(JobId child, double timeout) = 0;
};

class JobRunner {
  public:
    virtual ~JobRunner() = default;
    virtual void attach(JobHost&) {}  // before configure(): where a job's own jobs go
    // Called once, before the Welcome, while the comm thread is still starting MPI (which takes
    // ~0.25 s): loads what every job needs, so the first job does not wait for it. Best
    // effort: what fails here is done again, and reported, by configure().
    virtual void prepare() {}
    // The master adopted this worker: apply its sys.path and working directory.
    virtual void configure(const Welcome& welcome) = 0;
    // A function bundle for later tasks that name `key`.
    virtual void define(const std::string& key, Bytes bundle) = 0;
    // Runs one job. Errors in the job are an outcome with status Error, never an exception;
    // an exception here means the runner itself is broken and the worker ends. `comm`: a
    // parallel job's communicator (GangComms), which the job reads as ppmpi.comm().
    virtual RunOutcome run(const Task& task, Bytes args, Buffers arg_buffers,
                           std::optional<std::int64_t> comm) = 0;
};

// A parallel job's communicator (gangs.hpp), made on the job's thread from its Gang header and
// freed after the job. The MPI one: mpi/gang_comms.hpp.
class GangComms {
  public:
    virtual ~GangComms() = default;
    // Returns once every one of `ranks` (of this worker's MPI world) has called it, with the
    // communicator's Fortran handle (what mpi4py's Comm.f2py takes).
    virtual std::int64_t open(const std::vector<std::int32_t>& ranks, int tag) = 0;
    virtual void close(std::int64_t handle) = 0;
};

}  // namespace ppmpi
