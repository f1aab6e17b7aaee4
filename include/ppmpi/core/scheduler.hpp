// ppmpi/core/scheduler.hpp: which job goes to which worker. Pure logic: no MPI, Python, clock.
//
// Jobs wait in one FIFO queue. A worker takes up to `slots_per_worker` jobs at a time (more than
// one keeps a worker busy across the round trip to the master). assign() fills the least loaded
// workers first, so N jobs on N workers run one each before any worker gets a second. A
// pipelined worker is topped up once a quarter of its slots are free, not after every result,
// so that jobs (and then results) cross in batches, many per MPI message. And only while the
// queue is deep (set_deep_queue; a pool sets PoolSpec::deep_queue): otherwise idle workers get
// jobs first, then each busy one at most one behind its running one (the longest busy first),
// so that no worker waits a round trip for its next job, to the last one; the master takes such
// a job back for a worker that comes idle while the one ahead runs long (protocol step 4).
// It knows every worker's in-flight jobs: a lost worker's go back to the front of the queue
// (remove_worker); a retiring worker finishes its jobs but gets no more.
#pragma once

#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "ppmpi/core/ids.hpp"
#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

// How many jobs to keep in flight per worker, given how long recent jobs ran (negative: no
// job has finished yet). Jobs are pipelined so that a worker never waits a round trip (up to
// the master's longest poll sleep, 2 ms) for its next job: short ones as many as it runs in
// kPipelineBudget, long ones (and any before one finished) one behind the running one.
constexpr double kPipelineBudgetSeconds = 0.005;
std::size_t pipeline_depth(double mean_job_seconds, std::size_t max_depth);

// How many workers can be kept busy with jobs of this length (negative: not known yet, so as
// many as there are), given that the master hands out about one job per kMasterSecondsPerJob
// and a worker spends kWorkerSecondsPerJob on each beyond its run time. More would only take
// turns, each woken for a few jobs, all runnable at once (docs/performance.md, "Scale").
constexpr double kMasterSecondsPerJob = 10e-6;
constexpr double kWorkerSecondsPerJob = 40e-6;
std::size_t workers_worth_engaging(double mean_job_seconds);

class Scheduler {
  public:
    struct Assignment {
        JobId job;
        PeerId worker;
    };

    explicit Scheduler(std::size_t slots_per_worker = 1);

    void add_worker(PeerId worker);
    // Forgets the worker; its in-flight jobs are requeued at the front (oldest first) and
    // returned.
    std::vector<JobId> remove_worker(PeerId worker);
    // The worker gets no new jobs; it stays known until remove_worker.
    void retire_worker(PeerId worker);
    bool has_worker(PeerId worker) const { return workers_.count(worker) != 0; }
    void hold(PeerId worker, bool held);    // held: no new jobs (a parallel job's, gangs.hpp)
    std::size_t load(PeerId worker) const;  // its jobs in flight

    void enqueue(JobId job, bool front = false);  // front: a nested job's child (children.hpp)
    // A queued job goes to this worker now, whatever its load (a waiting parent runs it).
    bool take_for(JobId job, PeerId worker);
    // The job was on a worker that died: it runs alone from now on (on an idle worker, which
    // gets nothing else meanwhile), so that if it kills workers it alone is blamed.
    void run_alone(JobId job) { alone_.insert(job); }
    // Removes a job that has not started yet; false if it is running or unknown.
    bool cancel_pending(JobId job);

    // Hands out as many queued jobs as there are free slots on active workers.
    std::vector<Assignment> assign();

    // The job finished on that worker; false if it is not there (a late result).
    bool complete(PeerId worker, JobId job);
    // The job, not started on that worker, came back (protocol step 4): it waits again at the
    // front of the queue. False if the scheduler does not have it there.
    bool withdraw(PeerId worker, JobId job);
    // Workers with nothing to do, and (most loaded first, at most `count`) workers with at
    // least `min_load` jobs: where a job could be taken back from for an idle one.
    std::size_t idle_workers() const { return ready_.empty() ? 0 : ready_[0].size; }
    std::vector<PeerId> loaded_workers(std::size_t min_load, std::size_t count) const;

    std::optional<PeerId> worker_of(JobId job) const;
    std::vector<JobId> in_flight(PeerId worker) const;
    std::vector<PeerId> idle_retiring_workers() const {
        return {idle_retiring_.begin(), idle_retiring_.end()};
    }

    std::size_t pending() const { return waiting_.size(); }
    std::size_t running() const { return running_.size(); }
    std::size_t active_workers() const { return active_; }
    void set_slots_per_worker(std::size_t slots) { slots_ = slots == 0 ? 1 : slots; }
    std::size_t slots_per_worker() const { return slots_; }
    // Pipeline only while at least this many jobs per active worker wait (0: always).
    void set_deep_queue(std::size_t jobs_per_worker) { deep_queue_ = jobs_per_worker; }
    // An idle worker gets a job only while fewer than this many workers have jobs (0: no
    // limit): the jobs go to the busy ones' free slots instead, and none while more have jobs.
    void set_engaged_limit(std::size_t workers) { engaged_limit_ = workers; }

  private:
    struct WorkerSlots {
        PeerId id = 0;
        std::set<JobId> jobs;  // ordered: the oldest job is requeued first
        bool retiring = false;
        bool filling = false;  // topped up in this assign(): may take jobs up to the limit
        bool alone = false;    // runs a run_alone job: gets nothing else until it is done
        bool held = false;     // hold()
        WorkerSlots* prev = nullptr;  // its bucket's list (below)
        WorkerSlots* next = nullptr;
    };
    // Workers that may take jobs (not retiring, not running a job alone), by how many jobs
    // they have in flight: each load a list, the longest there first. Picking the least loaded
    // worker, and moving one to another load, then cost the same with 10 workers as with
    // 10,000 (no walk, no tree).
    struct Bucket {
        WorkerSlots* head = nullptr;
        WorkerSlots* tail = nullptr;
        std::size_t size = 0;
    };
    using Buckets = std::vector<Bucket>;

    void place(WorkerSlots& slots);
    void unplace(WorkerSlots& slots);
    WorkerSlots* least_loaded_free_worker() const;
    WorkerSlots* idle_worker() const;
    void take(JobId job, WorkerSlots& worker, bool alone);

    std::size_t slots_;
    std::size_t deep_queue_ = 0;
    std::size_t limit_ = 1;  // jobs per worker in this assign(): slots_ if the queue is deep
    std::deque<JobId> queue_;
    std::unordered_set<JobId> waiting_;  // the jobs in queue_ ...
    std::unordered_set<JobId> dropped_;  // ... and those cancelled there: skipped when reached
    std::unordered_map<PeerId, WorkerSlots> workers_;
    Buckets ready_;    // not topped up in this assign()
    Buckets filling_;  // topped up in this assign()
    std::vector<WorkerSlots*> filled_;  // this assign()'s, moved back to ready_ at its end
    std::set<PeerId> idle_retiring_;
    std::size_t active_ = 0;  // workers not retiring
    std::size_t placed_ = 0;  // workers in ready_ or filling_
    std::size_t engaged_limit_ = 0;
    std::unordered_map<JobId, PeerId> running_;
    std::set<JobId> alone_;
};

}  // namespace ppmpi
