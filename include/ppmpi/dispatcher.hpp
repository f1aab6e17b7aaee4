// ppmpi/dispatcher.hpp: the master's comm-loop logic (rank 0).
//
// One thread drives a Dispatcher (see master.hpp): it is the only caller of the transport and
// the launcher. Each Python Server is a *pool*: its own workers, job queue (Scheduler), job
// table and statistics. step() is one turn of the loop: receive frames, hand queued jobs to
// free worker slots (sending each function bundle once per worker), send heartbeats, and post
// one frame per worker. Nothing here waits on a peer, so a silent worker cannot stall the loop.
//
// Worker phases: Waiting (spawned, or a world rank, no Hello yet or not yet claimed by a pool)
// → Active (welcomed, gets jobs) → Retiring (finishes its jobs, gets no more) → Leaving
// (Shutdown sent) → Gone (Goodbye received).
#pragma once

#include <chrono>
#include <map>
#include <memory>
#include <optional>
#include <unordered_map>
#include <vector>

#include "ppmpi/backoff.hpp"
#include "ppmpi/function_cache.hpp"
#include "ppmpi/job_table.hpp"
#include "ppmpi/launcher.hpp"
#include "ppmpi/scheduler.hpp"
#include "ppmpi/transport.hpp"

namespace ppmpi {

using PoolId = int;

struct PoolSpec {
    std::size_t ncpus = 1;
    std::size_t slots_per_worker = 1;  // jobs in flight per worker
    std::vector<std::string> sys_path;  // the driver's sys.path, applied on every worker
    std::string cwd;
};

struct WorkerStats {
    std::string label;  // "host:rank"
    std::uint64_t jobs = 0;
    double seconds = 0.0;
};

struct PoolStats {
    std::size_t workers = 0;
    std::size_t pending = 0;
    std::size_t running = 0;
    std::vector<WorkerStats> per_worker;
    std::uint64_t tasks_sent = 0;
    std::uint64_t function_defs_sent = 0;
    std::uint64_t function_bytes_sent = 0;
};

struct DispatcherOptions {
    std::int64_t master_pid = 0;
    std::string master_host;
    std::chrono::milliseconds heartbeat{500};
    std::chrono::milliseconds master_timeout{30000};  // told to workers: exit if we go silent
};

class Dispatcher {
  public:
    Dispatcher(Transport& transport, Launcher& launcher, DispatcherOptions options);

    PoolId create_pool(const PoolSpec& spec, std::shared_ptr<JobTable> jobs);
    void resize_pool(PoolId pool, std::size_t ncpus);
    void submit(PoolId pool, JobId job, const std::string& key, Bytes bundle, Bytes args);
    // Fails the pool's unfinished jobs with Destroyed and sends its workers Shutdown.
    void destroy_pool(PoolId pool);
    PoolStats stats(PoolId pool) const;
    std::size_t pool_size(PoolId pool) const;

    // One turn of the loop; true if anything was received or sent.
    bool step(Clock::time_point now);
    // Shutdown to every worker, then steps until all said Goodbye or `grace` ran out, then
    // Release to world workers. True if every worker said Goodbye.
    bool shutdown(Clock::duration grace);
    // Workers that are not Gone (for the launcher's final decisions).
    std::size_t live_workers() const;

  private:
    enum class Phase { Waiting, Active, Retiring, Leaving, Gone };
    struct WorkerRecord {
        PeerId peer = -1;
        std::optional<PoolId> pool;
        Phase phase = Phase::Waiting;
        bool hello = false;
        std::int64_t pid = 0;
        std::string host;
        std::string label;
    };
    struct QueuedJob {
        std::string key;
        Bytes args;
    };
    struct Pool {
        PoolSpec spec;
        std::shared_ptr<JobTable> jobs;
        Scheduler scheduler;
        std::unordered_map<JobId, QueuedJob> queued;
        FunctionStore functions;
        std::map<WorkerId, WorkerStats> stats;
        std::uint64_t tasks_sent = 0, function_defs_sent = 0, function_bytes_sent = 0;
        bool destroyed = false;
    };

    Pool& pool_at(PoolId pool);
    const Pool& pool_at(PoolId pool) const;
    std::size_t members(PoolId pool) const;
    void add_workers(PoolId pool, std::size_t count);
    void remove_workers(PoolId pool, std::size_t count);
    void welcome(WorkerRecord& worker);
    void say_shutdown(WorkerRecord& worker);

    void handle_frame(Envelope envelope);
    void handle(WorkerRecord& worker, Message& message);
    void on_hello(WorkerRecord& worker, const Hello& hello);
    void on_result(WorkerRecord& worker, const Result& result, Bytes payload);
    void on_goodbye(WorkerRecord& worker);
    bool dispatch_jobs(PoolId id, Pool& pool);
    void retire_idle_workers(Pool& pool);
    void send_heartbeats(Clock::time_point now);
    void queue_message(PeerId peer, Message message);
    bool flush_outbox();

    Transport& transport_;
    Launcher& launcher_;
    DispatcherOptions options_;
    std::map<PoolId, Pool> pools_;
    PoolId next_pool_ = 1;
    std::map<PeerId, WorkerRecord> workers_;
    KnownFunctions known_;
    std::map<PeerId, std::vector<Message>> outbox_;
    Clock::time_point next_heartbeat_{};
};

}  // namespace ppmpi
