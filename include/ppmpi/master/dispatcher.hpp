// ppmpi/master/dispatcher.hpp: the master's comm-loop logic (rank 0).
//
// One thread drives a Dispatcher (master.hpp), the only caller of the transport and launcher.
// Each Python Server is a *pool*: its own workers, job queue (Scheduler), job table and stats.
// step() is one turn of the loop: receive frames, hand queued jobs to free worker slots (each
// function bundle sent once per worker), send heartbeats, post one frame per worker. Nothing
// here waits on a peer, so a silent worker cannot stall the loop.
// Worker phases: records.hpp. Faults: dispatcher_faults.cpp. Remote servers (dispatcher_links.cpp): a client's links make
// each server worker a slot of a pool (link_transport.hpp); a server relays its clients' jobs
// into its pool (link_relay.hpp).
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_map>
#include <vector>

#include "ppmpi/core/heartbeat.hpp"
#include "ppmpi/link/link_transport.hpp"
#include "ppmpi/master/link_relay.hpp"
#include "ppmpi/master/linked_launcher.hpp"
#include "ppmpi/master/records.hpp"

namespace ppmpi {

class Dispatcher {
  public:
    Dispatcher(Transport& transport, Launcher& launcher, DispatcherOptions options);
    PoolId create_pool(const PoolSpec& spec, std::shared_ptr<JobTable> jobs);
    void resize_pool(PoolId pool, std::size_t ncpus);
    // timeout: the job fails with Timeout past it (zero: no limit).
    void submit(PoolId pool, JobId job, const std::string& key, Bytes bundle, Bytes args,
                Clock::duration timeout = Clock::duration::zero(), Buffers arg_buffers = {});
    // Cancels an unfinished job (a running one if `running_too`: its worker is replaced).
    bool cancel(PoolId pool, JobId job, bool running_too = true);
    // Fails the pool's unfinished jobs with Destroyed and sends its workers Shutdown.
    void destroy_pool(PoolId pool);
    PoolStats stats(PoolId pool) const;
    std::size_t pool_size(PoolId pool) const;

    // One turn of the loop; true if anything was received or sent.
    bool step(Clock::time_point now);
    // Whether a result is likely within `window`, so worth polling for without sleeping.
    bool results_within(std::chrono::microseconds window) const;
    // No job queued or running in any pool: nothing needs an answer within a poll interval
    // (a submission wakes the dispatcher thread, Master::post).
    bool quiet() const;
    // A doze (doorbell.hpp) on live workers' bells until the next duty; false: one can't ring.
    bool plan_doze(Doze& plan) const;
    bool plan_socket_doze(Doze& plan) const;  // on remote links' sockets only; false: none
    bool has_links() const { return !link_pools_.empty(); }
    // Shutdown to all, steps until each said Goodbye or `grace` ran out, Release to world workers,
    // kills the silent on this host. True if none was lost and all ended in order.
    bool shutdown(Clock::duration grace);
    std::size_t live_workers() const;  // not Gone (for the launcher's final decisions)
    bool any_worker_lost() const { return workers_lost_ > 0; }  // dispatcher_links.cpp: A client: an authenticated socket to a server whose slots join
    // `pool`; with no worker usable for `limit`, the pool's waiting jobs fail (NoWorkers).
    int attach_link(PoolId pool, int fd, const link::SessionKeys& keys, std::string name);
    void close_link(int link);
    LinkStatus link_status(int link) const;
    void expect_links(PoolId pool, Clock::duration limit, std::string servers);
    // A server: a client's socket, its jobs run in `pool` within `limit` each (zero: none).
    void serve_link(PoolId pool, int fd, const link::SessionKeys& keys, std::string where,
                    Clock::duration limit);
    std::pair<std::size_t, std::vector<std::string>> link_sessions();  // count, events
  private:
    using Phase = WorkerPhase;
    using WorkerRecord = ppmpi::WorkerRecord;
    using Pool = PoolRecord;

    Pool& pool_at(PoolId pool);
    const Pool& pool_at(PoolId pool) const;
    std::size_t members(PoolId pool) const;  // Waiting or Active
    void add_workers(PoolId pool, std::size_t count);
    void settle_departures();
    void collect_launches();
    void remove_workers(PoolId pool, std::size_t count);
    void welcome(WorkerRecord& worker);
    void say_shutdown(WorkerRecord& worker);
    void end_job(Pool& pool, JobId job, JobOutcome outcome);

    // dispatcher_faults.cpp
    void check_liveness(Clock::time_point now, bool drained);
    void judge_by_process(WorkerRecord& worker, const HeartbeatMonitor::Silence& silence,
                          Clock::time_point now, Clock::duration behind);
    void judge_by_silence(const std::vector<WorkerRecord*>& silent, Clock::time_point now);
    std::size_t remote_workers() const;
    Clock::duration pool_timeout(const WorkerRecord& worker) const;
    void gone(WorkerRecord& worker);
    void check_deadlines(Clock::time_point now);
    std::vector<std::pair<JobId, WorkerId>> past_deadline(const Pool&, Clock::time_point) const;
    void lose_worker(WorkerRecord& worker, const std::string& reason, bool charge_jobs);
    void note_host_loss(const WorkerRecord& lost);
    void stop_worker(WorkerRecord& worker, const std::string& reason);
    // `charged`: the job that was running when its worker was lost (the others only waited).
    void requeue(Pool& pool, const std::vector<JobId>& jobs, const std::string& label,
                 std::optional<JobId> charged);
    std::optional<JobId> head_job(const Pool& pool, WorkerId worker) const;
    void start_head(Pool& pool, WorkerId worker);
    void learn_job_time(Pool& pool, double seconds);
    void notice_long_runs(Pool& pool);
    void replace_lost_workers();
    void shrink_to_members(PoolId id, Pool& pool, const std::string& why);
    void fail_without_workers();
    void kill_unanswering_workers();
    void adopt_slot(PeerId peer);
    void lose_ended_links();
    void fail_without_servers(Pool& pool);
    void on_remote_loss(WorkerRecord& worker, Pool& pool, const Result& result, Bytes why);
    void handle_frame(Envelope envelope);
    void handle(WorkerRecord& worker, Message& message);
    void on_hello(WorkerRecord& worker, const Hello& hello);
    void on_result(WorkerRecord& worker, const Result& result, Message& message);
    void on_goodbye(WorkerRecord& worker);
    void release(const std::vector<Launcher::Release>& releases);
    bool dispatch_jobs(Pool& pool);
    void take_back_for_idle(Pool& pool);
    bool on_withdrawn(WorkerRecord& worker, Pool& pool, JobId job);
    bool dispatch_all();
    void retire_idle_workers(Pool& pool);
    void send_heartbeats(Clock::time_point now);
    void queue_message(PeerId peer, Message message);
    bool flush_outbox();

    mutable link::LinkTransport transport_;  // the given transport, and remote servers' links
    LinkedLauncher launcher_;
    std::unique_ptr<LinkRelay> relay_;  // a ppmpi-server's clients
    std::map<int, PoolId> link_pools_;
    DispatcherOptions options_;
    std::map<PoolId, Pool> pools_;
    PoolId next_pool_ = 1;
    std::unordered_map<PeerId, WorkerRecord> workers_;  // looked up per frame: no tree
    std::vector<PeerId> in_order(const std::function<bool(const WorkerRecord&)>& which) const;
    KnownFunctions known_;
    std::unordered_map<PeerId, std::vector<Message>> outbox_;
    std::vector<PeerId> to_flush_;  // peers with messages queued since the last flush
    std::set<PeerId> held_;  // messages wait for the peer's Hello (flush_outbox)
    HeartbeatMonitor monitor_;
    ProcessWatch processes_;
    Clock::time_point now_{}, next_heartbeat_{}, next_liveness_check_{}, last_drained_{};
    std::uint64_t workers_lost_ = 0, send_order_ = 0, jobs_ended_ = 0;
    std::string host_ = this_host_name(), spawns_blocked_;  // the latter: why no more spawns
    std::size_t cores_ = usable_cores(), local_workers_ = 0;
};

}  // namespace ppmpi
