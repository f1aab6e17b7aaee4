// ppmpi/master/pool.hpp: one Python Server's share of the dispatcher, as pure logic.
//
// A Pool holds its job queue (Scheduler, with Gangs for parallel jobs and Children for nested
// ones), the records of its unfinished jobs (queued_job.hpp), their function bundles, the
// running jobs' deadlines, the job time that sets the pipeline depth, and its statistics. It
// decides and keeps accounts; the Dispatcher (dispatcher.hpp) sends what it decided, spawns
// workers and knows them across pools. No transport, no launcher, no clock: times are given.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ppmpi/core/children.hpp"
#include "ppmpi/core/functions.hpp"
#include "ppmpi/core/gangs.hpp"
#include "ppmpi/core/job_table.hpp"
#include "ppmpi/core/scheduler.hpp"
#include "ppmpi/master/pool_types.hpp"
#include "ppmpi/master/queued_job.hpp"

namespace ppmpi {

// How the pool gets its workers, kept with it by the Dispatcher's spawns and remote links. A
// Pool drops the deferred spawns when destroyed and times no_worker_since, nothing more.
struct PoolStaffing {
    std::string no_workers;           // why it has no worker left (its jobs fail with NoWorkers)
    bool replace_lost = false;        // spawn replacements for lost workers this turn
    std::size_t deferred_spawns = 0;  // workers to spawn once departures settle, by settle_by
    Clock::time_point settle_by{}, next_settle_check{};
    // With remote servers: how long its jobs may wait with no worker usable, local or remote,
    // before they fail with NoWorkers (zero: no such limit), and since when none is.
    Clock::duration no_worker_limit{};
    Clock::time_point no_worker_since{};
    std::string servers;  // their names, for that error
};

class Pool {
  public:
    using Placed = std::vector<std::pair<JobId, std::optional<PeerId>>>;

    Pool(const PoolSpec& spec, std::shared_ptr<JobTable> jobs);

    const PoolSpec& spec() const { return spec_; }
    void set_ncpus(std::size_t ncpus) { spec_.ncpus = ncpus; }
    JobTable& jobs() { return *jobs_; }
    Scheduler& scheduler() { return scheduler_; }
    const Scheduler& scheduler() const { return scheduler_; }
    Gangs& gangs() { return gangs_; }
    const Gangs& gangs() const { return gangs_; }
    Children& children() { return children_; }
    FunctionStore& functions() { return functions_; }
    PoolStaffing staffing;

    // Its unfinished jobs. A submitted one acquires its function bundle and waits in the
    // scheduler's queue (a parallel one in the gangs'); a job's child waits ahead of them.
    void submit(JobId job, QueuedJob queued, Bytes bundle);
    void submit_child(JobId child, QueuedJob queued, PeerId owner, JobId parent);
    const std::unordered_map<JobId, QueuedJob>& queued() const { return queued_; }
    const QueuedJob& job(JobId job) const { return queued_.at(job); }
    // Its outcome is in: it leaves the scheduler, the records and the function store. Returns
    // the worker it was sent to (none: it was still queued).
    std::optional<PeerId> remove_job(JobId job);
    void mark_sent(JobId job, std::uint64_t send_order);
    bool mark_regrouped(JobId job);  // false if it was regrouped for already

    // A worker runs its jobs in the order they were sent: its head is the oldest one there.
    std::optional<JobId> head_job(PeerId worker) const;
    void start_head(PeerId worker, Clock::time_point now);  // if it has not started yet
    void start(JobId job, Clock::time_point now);           // its time-out counts from now
    // Running jobs whose deadline is at or before `now`, with their workers (none for a
    // parallel job, gangs.hpp), the earliest deadline first.
    Placed past_deadline(Clock::time_point now) const;
    Clock::time_point next_deadline() const;                 // time_point::max(): none
    void shorten_deadline(JobId job, Clock::time_point by);  // unless it is due before `by`

    // Its worker left and the scheduler put the job back at the front of the queue: it runs
    // again, charged with the loss if it is `charged`. False if it was charged max_retries
    // times: it must fail (WorkerLost) instead.
    bool requeue(JobId job, const std::string& worker, std::optional<JobId> charged);
    bool requeue_gang(JobId job, const std::string& member);  // a member was lost

    // Jobs to ask back from behind a busy worker's running one, for idle workers (protocol
    // step 4), with the workers they wait on; each is marked as being withdrawn.
    std::vector<std::pair<PeerId, JobId>> take_back_for_idle(Clock::time_point now);
    void ask_back(JobId job);                  // marked as being withdrawn
    bool withdrawn(PeerId worker, JobId job);  // false if it was not asked back from there

    // The mean job time sets how deep each worker's pipeline is and how many are engaged.
    void learn_job_time(double seconds);
    double mean_job_seconds() const { return mean_job_seconds_; }
    // `drained`: when the master last read everything there was.
    void notice_long_runs(Clock::time_point now, Clock::time_point drained);

    void name_worker(PeerId worker, const std::string& label);
    void record_result(PeerId worker, const std::string& label, double seconds,
                       Clock::time_point now);
    const std::unordered_map<PeerId, WorkerStats>& worker_stats() const { return stats_; }
    void count_task() { ++tasks_sent_; }
    void count_function_def(std::size_t bytes);
    void count_lost_worker() { ++workers_lost_; }
    void start_failed(const std::string& why);
    // Its jobs' counts and counters, and its workers' stats but a remote server's slots';
    // not the worker counts and running jobs, which need the Dispatcher's workers.
    PoolStats stats() const;

    bool quiet() const;  // no job queued or running
    bool destroyed() const { return destroyed_; }
    void destroy();                            // forgets its jobs and deferred spawns
    bool relayed() const { return relayed_; }  // its jobs are a ppmpi-server's clients'
    void mark_relayed() { relayed_ = true; }
    // With jobs waiting and no worker usable, true once that has lasted no_worker_limit.
    bool no_worker_limit_passed(Clock::time_point now);

  private:
    void unstart(JobId job, QueuedJob& queued);

    PoolSpec spec_;
    std::shared_ptr<JobTable> jobs_;
    Scheduler scheduler_;
    Gangs gangs_;
    Children children_;
    std::unordered_map<JobId, QueuedJob> queued_;
    FunctionStore functions_;
    std::unordered_map<PeerId, WorkerStats> stats_;
    std::uint64_t tasks_sent_ = 0, function_defs_sent_ = 0, function_bytes_sent_ = 0;
    std::uint64_t workers_lost_ = 0, jobs_requeued_ = 0, start_failures_ = 0;
    std::uint64_t jobs_taken_back_ = 0;
    std::string start_error_;      // why the last launch that failed failed
    std::size_t withdrawing_ = 0;  // jobs asked back from their workers, not answered yet
    std::set<std::pair<Clock::time_point, JobId>> deadlines_;  // of its running timed jobs
    double mean_job_seconds_ = -1.0;      // recent jobs' run time (negative: none yet)
    Clock::time_point last_result_at_{};  // the last result of one of its jobs
    Clock::time_point next_long_run_check_{};
    bool destroyed_ = false;
    bool relayed_ = false;
};

}  // namespace ppmpi
