// Dispatcher, fault side: lost workers, job time-outs, replacing workers.
//
// A worker is *lost* when its process is gone or stopped (on this host, judged by the
// process), or it stays silent past its pool's worker_timeout (elsewhere, HeartbeatMonitor).
// A lost worker is never spoken to again (killed by pid if on this host); its in-flight jobs go
// back to the front of the queue, the one it ran charged with the loss (a job charged
// max_retries times fails with WorkerLost). Lost workers are replaced by spawns (if none is
// possible the pool shrinks, and with no worker left its jobs fail with NoWorkers); a remote
// server's slot is not (its server offers another). A job past its timeout (or cancelled while
// running) ends; its worker is stopped and replaced. Lost workers' results are dropped.
#include <algorithm>
#include <cstdio>

#include "ppmpi/core/log.hpp"
#include "ppmpi/master/dispatcher.hpp"
#include "message_text.hpp"

namespace ppmpi {
namespace {

// How often liveness is checked (a pass over every watched worker: not on every loop turn).
constexpr auto kLivenessPeriod = std::chrono::milliseconds(100);
constexpr auto kLivenessForced = std::chrono::seconds(1);

}  // namespace

// Every kLivenessPeriod, once the frames that arrived are read (a backlog of unread heartbeats
// is no silence), or at the latest every kLivenessForced while a flood keeps the turns full.
// A master that has not read everything since `last_drained_` is behind by that much: what it
// takes for silence may be heartbeats still unread (a starved master: 512 ranks on 2 cores).
void Dispatcher::check_liveness(Clock::time_point now, bool drained) {
    if (drained) last_drained_ = now;
    if (now < next_liveness_check_) return;
    if (!drained && now < next_liveness_check_ + kLivenessForced) return;
    next_liveness_check_ = now + kLivenessPeriod;
    for (PeerId id : processes_.exited()) {
        auto it = workers_.find(id);
        if (it != workers_.end()) lose_worker(it->second, "its process exited", true);
    }
    std::vector<WorkerRecord*> elsewhere;
    Clock::duration behind = now - last_drained_;
    for (const HeartbeatMonitor::Silence& silence : monitor_.silent(now)) {
        WorkerRecord& worker = workers_.at(silence.worker);
        if (!worker.hello) {
            lose_worker(worker, "it never started (no Hello)", true);
        } else if (judged_here(worker.process)) {
            judge_by_process(worker, silence, now, behind);
        } else if (silence.silent_for - behind <= silence.timeout) {
            monitor_.postpone(worker.peer, now + silence.timeout);  // its frames may be unread
        } else {
            elsewhere.push_back(&worker);
        }
    }
    judge_by_silence(elsewhere, now);
}

// A worker of this host is judged by its process, not by its heartbeats alone: on an overloaded
// host (hundreds of ranks on a few cores, or a CPU hog beside them) heartbeats come late, and
// declaring starved workers lost, then starting replacements, only adds load (measured: at 256
// ranks on 2 cores every worker in turn, and the run never ended). A stopped process is hung;
// a running one is given kStarvedTimeouts timeouts, in case it is hung in a way no state shows.
void Dispatcher::judge_by_process(WorkerRecord& worker, const HeartbeatMonitor::Silence& silence,
                                  Clock::time_point now, Clock::duration behind) {
    switch (process_state(worker.process)) {
        case ProcessState::Gone: lose_worker(worker, "its process exited", true); return;
        case ProcessState::Stopped:
            lose_worker(worker, "its process is stopped and silent for longer than its "
                                "worker_timeout of " + seconds_text(silence.timeout), true);
            return;
        case ProcessState::Running: break;
    }
    if (silence.silent_for - behind > kStarvedTimeouts * silence.timeout) {
        lose_worker(worker, "silent for " + seconds_text(silence.silent_for) +
                                " although its process runs (hung)", true);
        return;
    }
    log_debug("worker " + worker.label + " silent for " + seconds_text(silence.silent_for) +
              ", but its process runs: starved of CPU, not lost");
    monitor_.postpone(worker.peer, now + silence.timeout);
}

// Workers of other hosts are judged by their silence. Many of them going silent together, on
// more than one host, is more likely a master that was cut off or starved than so many deaths:
// they get one more timeout (a real death is still found, one timeout later).
void Dispatcher::judge_by_silence(const std::vector<WorkerRecord*>& silent, Clock::time_point now) {
    constexpr std::size_t kMany = 4;
    std::set<std::string> hosts;
    std::size_t first_time = 0;
    for (WorkerRecord* worker : silent) {
        hosts.insert(worker->process.host);
        first_time += !worker->excused;
    }
    if (first_time >= kMany && hosts.size() > 1 && 2 * first_time > remote_workers()) {
        log_warning(std::to_string(first_time) + " workers on " + std::to_string(hosts.size()) +
                    " other hosts went silent together: taken as a network or load problem, "
                    "they are given one more worker_timeout");
        for (WorkerRecord* worker : silent) {
            worker->excused = true;
            monitor_.postpone(worker->peer, now + pool_timeout(*worker));
        }
        return;
    }
    for (WorkerRecord* worker : silent)
        lose_worker(*worker, "silent for longer than its worker_timeout (hung or unreachable)",
                    true);
}

// A parallel job past its deadline ends as end_gang says: with what came, kAbortGrace after a
// member's error; timed out otherwise.
void Dispatcher::check_deadlines(Clock::time_point now) {
    for (auto& [id, pool] : pools_) {
        for (const auto& [job, peer] : pool.past_deadline(now)) {
            if (!peer) {
                end_gang(pool, job, pool.gangs().any_error(job) ? Outcome::Ok : Outcome::Timeout);
                continue;
            }
            WorkerRecord& worker = workers_.at(*peer);
            std::string message = "ran longer than its timeout of " +
                                  seconds_text(pool.job(job).timeout) + " on worker " +
                                  worker.label + "; the worker was stopped and replaced";
            end_job(pool, job, JobOutcome{Outcome::Timeout, {}, message, worker.label, 0.0});
            orphan_children(pool, worker.peer, /*stop_running=*/true);
            stop_worker(worker, "its job timed out");
        }
    }
}

// A worker that still runs but must go (its job timed out or was cancelled): told to leave at
// once (it may be on another host), killed if on this one, and replaced. Its other jobs are
// requeued without being charged: the worker did not fail.
void Dispatcher::stop_worker(WorkerRecord& worker, const std::string& reason) {
    if (worker.phase == Phase::Gone) return;
    transport_.post(worker.peer, encode_frame({Message{Shutdown{true}, {}}}));
    lose_worker(worker, reason, false);
}

void Dispatcher::lose_worker(WorkerRecord& worker, const std::string& reason, bool charge_jobs) {
    if (worker.phase == Phase::Gone) return;
    bool was_serving = worker.phase == Phase::Active || worker.phase == Phase::Waiting;
    gone(worker);
    ++workers_lost_;
    outbox_.erase(worker.peer);
    held_.erase(worker.peer);
    kill_process(worker.process);  // on this host: no orphan, and no word from it again
    release(launcher_.lost(worker.peer));
    // A surplus process (of a spawn attempt given up on, which returned late) belongs to no
    // pool; its warning came with the attempt. A destroyed pool's losses matter to nobody.
    auto owner = worker.pool ? pools_.find(*worker.pool) : pools_.end();
    bool heeded = owner != pools_.end() && !owner->second.destroyed();
    (heeded ? log_warning : log_debug)("worker " + worker.label + " lost: " + reason);
    if (worker.linked && charge_jobs)  // a remote server's slot silent: the server is hung
        transport_.fail(link::LinkTransport::link_of(worker.peer), "its worker " + worker.label +
                                                                       " was lost: " + reason);
    note_host_loss(worker);
    if (!heeded) return;
    Pool& pool = owner->second;
    pool.count_lost_worker();
    std::optional<JobId> running = charge_jobs ? pool.head_job(worker.peer) : std::nullopt;
    requeue(pool, pool.scheduler().remove_worker(worker.peer), worker.label, running);
    orphan_children(pool, worker.peer);
    leave_gang(pool, worker);
    if (was_serving && !worker.linked)
        pool.staffing.replace_lost = true;  // spawned later this turn
}

// Under mpirun, a host whose every rank was lost may have lost its Open MPI daemon too, and then
// any spawn makes mpirun end the whole job: the launch is relayed through every daemon, and one
// that is gone gives "grpcomm:direct:send_relay ... NOT ALIVE" and FORCE-TERMINATE (seen in
// tests/cluster far-host-lost). From then on no worker is spawned; pools shrink, saying why.
void Dispatcher::note_host_loss(const WorkerRecord& lost) {
    const std::string& host = lost.process.host;
    if (!spawns_blocked_.empty() || !launcher_.in_world(lost.peer) || host.empty() ||
        host == host_)
        return;
    for (const auto& [peer, worker] : workers_)
        if (launcher_.in_world(peer) && worker.process.host == host && worker.phase != Phase::Gone)
            return;
    spawns_blocked_ = "every worker rank on " + host +
                      " was lost, so its Open MPI daemon may be gone as well, and a spawn would "
                      "then make mpirun end the whole job";
    log_warning(spawns_blocked_ + "; no more workers are started in this run");
}

// remove_worker already put the jobs back at the front of the queue; here the one that was
// running is charged with the loss (Pool::requeue), and one charged max_retries times fails
// instead of taking down more workers.
void Dispatcher::requeue(Pool& pool, const std::vector<JobId>& jobs,
                         const std::string& label, std::optional<JobId> charged) {
    for (JobId job : jobs) {
        const Children::Child* child = pool.children().find(job);
        if (child && child->orphaned) {  // its parent was cancelled: not run again
            end_job(pool, job, JobOutcome{Outcome::Cancelled, {}, "its parent ended", {}, 0.0});
            continue;
        }
        if (pool.requeue(job, label, charged)) continue;
        std::string message =
            "it was running on " + join(pool.job(job).lost_on) +
            " when each of them was lost (max_retries=" + std::to_string(pool.spec().max_retries) +
            ")";
        end_job(pool, job, JobOutcome{Outcome::WorkerLost, {}, message, label, 0.0});
    }
}

// Lost workers are replaced by spawns in every launch mode (a lost world rank too: it cannot
// come back, a spawned process takes its place), once every dead worker of this turn has been
// noticed (a spawn while Open MPI is still handling a death can hang: departures_settled in
// dispatcher_pools.cpp). Where nothing can be spawned (srun), the pool shrinks instead.
void Dispatcher::replace_lost_workers() {
    for (auto& [id, pool] : pools_) {
        if (!pool.staffing.replace_lost || pool.destroyed()) continue;
        pool.staffing.replace_lost = false;
        std::size_t have = members(id);
        if (have >= pool.spec().ncpus) continue;
        try {
            add_workers(id, pool.spec().ncpus - have);
        } catch (const std::exception& e) {
            shrink_to_members(id, pool, std::string("a lost worker could not be replaced: ") +
                                            e.what());
        }
    }
}

// The pool keeps the workers it has. With none left, its jobs would wait for ever: they fail
// with NoWorkers instead (fail_without_workers) until set_ncpus starts new ones.
void Dispatcher::shrink_to_members(PoolId id, Pool& pool, const std::string& why) {
    pool.set_ncpus(std::min(pool.spec().ncpus, members(id)));
    std::string now = "the server now has " + std::to_string(pool.spec().ncpus) + " workers";
    if (pool.spec().ncpus == 0) {
        pool.staffing.no_workers = why;
        now += ": its jobs fail with NoWorkers until set_ncpus(n) starts new workers";
    }
    log_warning(why + "; " + now);
}

void Dispatcher::fail_without_workers() {
    for (auto& [id, pool] : pools_) {
        if (pool.staffing.no_worker_limit > Clock::duration::zero()) fail_without_servers(pool);
        if (pool.staffing.no_workers.empty() || pool.destroyed() || pool.queued().empty()) continue;
        std::vector<JobId> jobs;
        for (const auto& [job, queued] : pool.queued()) jobs.push_back(job);
        std::string message = "the server has no workers left (" + pool.staffing.no_workers +
                              "); set_ncpus(n) starts new ones";
        for (JobId job : jobs)
            end_job(pool, job, JobOutcome{Outcome::NoWorkers, {}, message, {}, 0.0});
    }
}

std::size_t Dispatcher::remote_workers() const {
    std::size_t count = 0;
    for (const auto& [peer, worker] : workers_)
        count += worker.hello && worker.phase != Phase::Gone && !judged_here(worker.process);
    return count;
}

Clock::duration Dispatcher::pool_timeout(const WorkerRecord& worker) const {
    auto pool = worker.pool ? pools_.find(*worker.pool) : pools_.end();
    return pool == pools_.end() ? Clock::duration(options_.start_timeout)
                                : Clock::duration(pool->second.spec().worker_timeout);
}

// At the very end: whatever did not say Goodbye (hung, told to leave at once, or lost) and
// still runs on this host is killed, so no worker outlives the master.
void Dispatcher::kill_unanswering_workers() {
    for (auto& [peer, worker] : workers_)
        if (worker.hello && !worker.goodbye) kill_process(worker.process);
}

// A spawned worker may outlive its Release: its job still runs (worker.cpp, close) or it is
// still in MPI's end. Its process is not ours but the runtime daemon's, and a daemon that must
// end children when a singleton master exits can hang in its own finalize (PMIx 3, seen here
// with a worker in its grace after a Ctrl-C'd driver: the daemon, and with it the driver's
// stdout and stderr, lived on). So the master sees them end before it does (master.cpp).
// World ranks are left out: they end with their mpirun, in MPI_Finalize with the master.
std::vector<ProcessIdentity> Dispatcher::spawned_here() const {
    std::vector<ProcessIdentity> out;
    for (const auto& [peer, worker] : workers_)
        if (worker.hello && !worker.linked && !launcher_.in_world(peer) &&
            judged_here(worker.process))
            out.push_back(worker.process);
    return out;
}

}  // namespace ppmpi
