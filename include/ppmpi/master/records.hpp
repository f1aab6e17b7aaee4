// ppmpi/master/records.hpp: what the dispatcher keeps of each worker and of each pool.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>

#include "ppmpi/core/children.hpp"
#include "ppmpi/core/functions.hpp"
#include "ppmpi/core/gangs.hpp"
#include "ppmpi/core/job_table.hpp"
#include "ppmpi/core/process.hpp"
#include "ppmpi/core/scheduler.hpp"
#include "ppmpi/master/pool_types.hpp"
#include "ppmpi/master/queued_job.hpp"
#include "ppmpi/transport/transport.hpp"

namespace ppmpi {

// Waiting (spawned or a world rank; no Hello yet, or no pool yet) → Active (gets jobs) →
// Retiring (finishes its jobs) → Leaving (Shutdown) → Gone (Goodbye, lost, no launch).
enum class WorkerPhase { Waiting, Active, Retiring, Leaving, Gone };

struct WorkerRecord {
    PeerId peer = -1;
    std::optional<PoolId> pool;
    WorkerPhase phase = WorkerPhase::Waiting;
    bool hello = false, goodbye = false, released = false;
    bool local = false;    // its process runs on this host (counted in local_workers_)
    bool linked = false;   // a remote server's slot (link_transport.hpp)
    bool excused = false;  // silent with many others: given one more timeout (faults)
    bool settled = false;  // Gone, and its process's end was waited for before a spawn
    ProcessIdentity process;
    std::string label;
};

// One Python Server: its jobs, their queue, and what it sent.
struct PoolRecord {
    PoolSpec spec;
    std::shared_ptr<JobTable> jobs;
    Scheduler scheduler;
    Gangs gangs;  // its parallel jobs (nranks), beside the scheduler's single ones
    Children children;  // jobs its jobs submitted (nested jobs)
    std::unordered_map<JobId, QueuedJob> queued;
    FunctionStore functions;
    std::unordered_map<PeerId, WorkerStats> stats;
    std::uint64_t tasks_sent = 0, function_defs_sent = 0, function_bytes_sent = 0;
    std::uint64_t workers_lost = 0, jobs_requeued = 0, start_failures = 0, jobs_taken_back = 0;
    std::string start_error;    // why the last launch that failed failed
    std::string no_workers;     // why it has no worker left (its jobs fail with NoWorkers)
    bool replace_lost = false;  // spawn replacements for lost workers this turn
    std::size_t deferred_spawns = 0;  // workers to spawn once departures settle, by settle_by
    Clock::time_point settle_by{}, next_settle_check{};
    std::size_t withdrawing = 0;  // jobs asked back from their workers, not answered yet
    std::set<std::pair<Clock::time_point, JobId>> deadlines;  // of its running timed jobs
    double mean_job_seconds = -1.0;  // recent jobs' run time (sets the pipeline depth)
    Clock::time_point last_result_at{};  // the last result of one of its jobs
    Clock::time_point next_long_run_check{};  // Dispatcher::notice_long_runs
    bool destroyed = false;
    bool relayed = false;  // its jobs are a ppmpi-server's clients' (link_relay.hpp)
    // With remote servers: how long its jobs may wait with no worker usable, local or remote,
    // before they fail with NoWorkers (zero: no such limit), and since when none is.
    Clock::duration no_worker_limit{};
    Clock::time_point no_worker_since{};
    std::string servers;  // their names, for that error
};

}  // namespace ppmpi
