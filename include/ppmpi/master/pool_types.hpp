// ppmpi/master/pool_types.hpp: the values that describe a pool (one Python Server) to the dispatcher.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

namespace ppmpi {

using PoolId = int;

struct PoolSpec {
    std::size_t ncpus = 1;
    std::size_t slots_per_worker = 1;   // jobs in flight per worker, at most
    std::size_t deep_queue = 4;         // ... and more than one only while this many per
                                        // worker wait (scheduler.hpp)
    std::vector<std::string> sys_path;  // the driver's sys.path, applied on every worker
    std::string cwd;
    std::chrono::milliseconds worker_timeout{5000};  // silence after which a worker is lost
    std::size_t max_retries = 3;  // a job that took down this many workers fails (WorkerLost)
};

struct WorkerStats {
    std::string label;  // "host:rank"
    std::uint64_t jobs = 0;
    double seconds = 0.0;
};

struct RunningJob {
    std::uint64_t job = 0;  // a JobId
    std::string worker;  // "host:rank"
    double seconds = 0.0;  // since it was sent
};

struct PoolStats {
    std::size_t workers = 0;
    std::size_t starting = 0;  // workers not yet heard from (no Hello), not lost either
    std::size_t pending = 0;
    std::size_t running = 0;
    std::vector<WorkerStats> per_worker;
    std::vector<RunningJob> running_jobs;
    std::uint64_t tasks_sent = 0;
    std::uint64_t function_defs_sent = 0;
    std::uint64_t function_bytes_sent = 0;
    std::uint64_t workers_lost = 0;
    std::uint64_t start_failures = 0;  // workers whose launch failed; start_error says why
    std::string start_error;
    std::uint64_t jobs_requeued = 0;
    std::uint64_t jobs_taken_back = 0;  // given back unstarted to run elsewhere (sent twice)
};

// A client's link to a remote server, for Python (its connector and statistics).
struct LinkStatus {
    bool known = false;  // attached and not closed
    bool ready = false;  // the server's Info came: its slots are joining
    bool ended = false;
    std::string reason;  // why it ended
    std::string host;
    std::int64_t pid = 0;
    std::size_t workers = 0;
    std::uint64_t jobs = 0;  // done by its slots
    double seconds = 0.0;
};

struct DispatcherOptions {
    std::int64_t master_pid = 0;
    std::string master_host;
    std::chrono::milliseconds heartbeat{500};
    std::chrono::milliseconds master_timeout{30000};  // told to workers: exit if we go silent
    // A spawned worker's first Hello: MPI start-up takes ~0.25 s, and a spawn that hangs is
    // retried in the background for up to 21 s (spawn_queue.hpp); a worker still silent after
    // this long is declared lost (and replaced).
    std::chrono::milliseconds start_timeout{30000};
};

}  // namespace ppmpi
