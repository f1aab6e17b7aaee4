// ppmpi/master/dispatcher.hpp: the master's comm-loop logic (rank 0).
//
// One thread drives a Dispatcher (master.hpp), the only caller of the transport and launcher.
// Each Python Server is a *pool*: its own workers, and a Pool (pool.hpp), the pure logic of its
// jobs (queue, deadlines, requeues, take-backs, job time, stats) whose decisions this sends.
// step() is one turn: receive, hand queued jobs to free worker slots (a function bundle once per
// worker), heartbeats, one frame per worker. Nothing waits on a peer: a silent one stalls nothing.
// Worker phases: records.hpp. Faults: dispatcher_faults.cpp. Remote servers: dispatcher_links.cpp.
// Parallel jobs: dispatcher_gangs.cpp. Spawns: dispatcher_spawns.cpp.
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
#include "ppmpi/master/pool.hpp"
#include "ppmpi/master/records.hpp"

namespace ppmpi {

class Dispatcher {
  public:
    Dispatcher(Transport& transport, Launcher& launcher, DispatcherOptions options);
    PoolId create_pool(const PoolSpec& spec, std::shared_ptr<JobTable> jobs);
    void resize_pool(PoolId pool, std::size_t ncpus);
    // timeout: the job fails with Timeout past it (zero: no limit). nranks > 0: a parallel job.
    void submit(PoolId pool, JobId job, const std::string& key, Bytes bundle, Bytes args,
                Clock::duration timeout = Clock::duration::zero(), Buffers arg_buffers = {},
                std::size_t nranks = 0);
    // Cancels an unfinished job (a running one if `running_too`: its worker is replaced).
    bool cancel(PoolId pool, JobId job, bool running_too = true);
    void destroy_pool(PoolId pool);  // its unfinished jobs fail (Destroyed), its workers leave
    PoolStats stats(PoolId pool) const;
    std::size_t pool_size(PoolId pool) const;
    bool step(Clock::time_point now);  // one turn; true if anything was received or sent
    bool results_within(std::chrono::microseconds window) const;  // worth polling for one?
    // No job queued or running: nothing needs an answer soon (a submission wakes the thread).
    bool quiet() const;
    bool plan_doze(Doze& plan) const;  // on live workers' bells (doorbell.hpp); false: can't
    bool plan_socket_doze(Doze& plan) const;  // on remote links' sockets only; false: none
    bool has_links() const { return !link_pools_.empty(); }
    // Goodbyes within `grace`, Releases, the silent here killed; true if all ended in order.
    bool shutdown(Clock::duration grace);
    std::vector<ProcessIdentity> spawned_here() const;  // to see ended after MPI's (master.cpp)
    std::size_t live_workers() const;  // not Gone (for the launcher's final decisions)
    bool any_worker_lost() const { return workers_lost_ > 0; }
    // dispatcher_links.cpp. A client: an authenticated socket to a server whose slots join
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

    Pool& pool_at(PoolId pool);
    const Pool& pool_at(PoolId pool) const;
    std::size_t members(PoolId pool) const;  // Waiting or Active (not remote servers' slots)
    void add_workers(PoolId pool, std::size_t count);
    void spawn_workers(PoolId pool, std::size_t count);
    void start_deferred_spawns();
    void collect_launches();
    void remove_workers(PoolId pool, std::size_t count);
    void welcome(WorkerRecord& worker);
    void say_shutdown(WorkerRecord& worker);
    void end_job(Pool& pool, JobId job, JobOutcome outcome);
    void check_liveness(Clock::time_point now, bool drained);  // dispatcher_faults.cpp:
    void judge_by_process(WorkerRecord& worker, const HeartbeatMonitor::Silence& silence,
                          Clock::time_point now, Clock::duration behind);
    void judge_by_silence(const std::vector<WorkerRecord*>& silent, Clock::time_point now);
    std::size_t remote_workers() const;
    Clock::duration pool_timeout(const WorkerRecord& worker) const;
    void gone(WorkerRecord& worker);
    void check_deadlines(Clock::time_point now);
    void lose_worker(WorkerRecord& worker, const std::string& reason, bool charge_jobs);
    void note_host_loss(const WorkerRecord& lost);
    void stop_worker(WorkerRecord& worker, const std::string& reason);
    void requeue(Pool& pool, const std::vector<JobId>& jobs, const std::string& label,
                 std::optional<JobId> charged);
    void replace_lost_workers();
    void shrink_to_members(PoolId id, Pool& pool, const std::string& why);
    void fail_without_workers();
    void kill_unanswering_workers();
    void dispatch_gangs(PoolId id, Pool& pool);
    void regroup_for(PoolId id, Pool& pool, JobId job, std::size_t nranks);
    void on_gang_result(WorkerRecord& worker, Pool& pool, const Result& result, Message& message);
    void end_gang(Pool& pool, JobId job, Outcome why);  // Ok: from its members' answers
    void leave_gang(Pool& pool, const WorkerRecord& worker);
    void handle_nested(WorkerRecord& worker, Message& message);  // dispatcher_nested.cpp
    void help_with(Pool& pool, JobId child, PeerId helper);
    bool end_child(Pool& pool, JobId job, JobOutcome& outcome, std::optional<PeerId> ran_on);
    void orphan_children(Pool& pool, PeerId owner, bool stop_running = false);
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
    void send_task(Pool& pool, PeerId worker, JobId job, const QueuedJob& queued);
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
