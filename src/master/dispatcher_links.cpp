// Dispatcher, remote servers: a client's links (each server worker a slot of a pool, scheduled
// with the pool's own workers) and a server's clients (link_relay.hpp).
#include <unistd.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"
#include "ppmpi/master/dispatcher.hpp"

namespace ppmpi {

int Dispatcher::attach_link(PoolId pool, int fd, const link::SessionKeys& keys,
                            std::string name) {
    if (pool_at(pool).destroyed()) {
        ::close(fd);
        throw DestroyedError("the server was destroyed");
    }
    int id = transport_.attach(fd, keys, std::move(name));
    link_pools_[id] = pool;
    return id;
}

// Its slots are lost now (their jobs run elsewhere) unless they said Goodbye already.
void Dispatcher::close_link(int id) {
    transport_.close(id);
    lose_ended_links();
    link_pools_.erase(id);
}

LinkStatus Dispatcher::link_status(int id) const {
    LinkStatus status;
    const link::LinkTransport::State* state = transport_.state(id);
    if (state == nullptr) return status;
    status.known = true;
    status.ready = state->ready;
    status.ended = state->ended;
    status.reason = state->reason;
    status.host = state->info.host;
    status.pid = state->info.pid;
    status.workers = state->info.workers;
    auto pool = link_pools_.find(id);
    if (pool == link_pools_.end() || !pools_.count(pool->second)) return status;
    for (const auto& [peer, stats] : pool_at(pool->second).worker_stats()) {
        if (!LinkedLauncher::linked(peer) || link::LinkTransport::link_of(peer) != id) continue;
        status.jobs += stats.jobs;
        status.seconds += stats.seconds;
    }
    return status;
}

void Dispatcher::expect_links(PoolId pool, Clock::duration limit, std::string servers) {
    Pool& p = pool_at(pool);
    p.staffing.no_worker_limit = limit;
    p.staffing.servers = std::move(servers);
}

void Dispatcher::serve_link(PoolId pool, int fd, const link::SessionKeys& keys,
                            std::string where, Clock::duration limit) {
    Pool& p = pool_at(pool);
    if (p.destroyed() || (relay_ && !p.relayed())) {
        ::close(fd);
        throw PpmpiError("this server's pool cannot serve clients");
    }
    if (!relay_) relay_ = std::make_unique<LinkRelay>(*this, pool, limit);
    p.mark_relayed();
    relay_->serve(fd, keys, std::move(where));
}

// Between polls, the sockets of remote links wake a sleeping dispatcher: what a server or a
// client sends is read at once, not after the sleep (Master::idle_wait).
bool Dispatcher::plan_socket_doze(Doze& plan) const {
    if (!transport_.socket_fds(plan.fds) || (relay_ && !relay_->plan(plan.fds))) return false;
    return !plan.fds.empty();
}

std::pair<std::size_t, std::vector<std::string>> Dispatcher::link_sessions() {
    if (!relay_) return {0, {}};
    return {relay_->sessions(), relay_->take_events()};
}

// Link protocol step 2: a slot's first frame (its Hello) makes it a worker of the link's pool.
void Dispatcher::adopt_slot(PeerId peer) {
    auto pool = link_pools_.find(link::LinkTransport::link_of(peer));
    if (pool == link_pools_.end()) return;  // a link closed meanwhile
    WorkerRecord record;
    record.peer = peer;
    record.pool = pool->second;
    record.linked = true;
    record.label = transport_.state(pool->first)->name + "/slot" +
                   std::to_string(link::LinkTransport::slot_of(peer));
    workers_.emplace(peer, std::move(record));
}

void Dispatcher::lose_ended_links() {
    for (const auto& [peer, reason] : transport_.take_ended()) {
        auto it = workers_.find(peer);
        if (it != workers_.end())
            lose_worker(it->second, "the link to its server ended (" + reason + ")", true);
    }
}

// Link protocol step 4: the server's worker died running the job (Lost: charged here, as a
// worker of ours would be, and run again) or the server ended it (Failed: its outcome).
void Dispatcher::on_remote_loss(WorkerRecord& worker, Pool& pool, const Result& result,
                                Bytes why) {
    if (result.status == ResultStatus::Lost) {
        if (!pool.scheduler().withdraw(worker.peer, result.job_id)) return;
        log_warning("job " + std::to_string(result.job_id) + " lost on " + worker.label + ": " +
                    why);
        requeue(pool, {result.job_id}, worker.label, result.job_id);
    } else {
        auto outcome = result.outcome < kOutcomeCount ? static_cast<Outcome>(result.outcome)
                                                      : Outcome::RemoteError;
        end_job(pool, result.job_id,
                JobOutcome{outcome, {}, std::move(why), worker.label, result.seconds});
    }
    pool.start_head(worker.peer, now_);
}

// Past the limit (Pool::no_worker_limit_passed), the jobs not sent to a worker fail.
void Dispatcher::fail_without_servers(Pool& pool) {
    if (!pool.no_worker_limit_passed(now_)) return;
    std::vector<JobId> jobs;
    for (const auto& [job, queued] : pool.queued())
        if (!pool.scheduler().worker_of(job)) jobs.push_back(job);
    double limit = std::chrono::duration<double>(pool.staffing.no_worker_limit).count();
    std::string message =
        "no worker, local or remote, was usable for " + std::to_string(static_cast<int>(limit)) +
        " s (servers: " + pool.staffing.servers + "); start a ppmpi-server or call set_ncpus(n)";
    for (JobId job : jobs) end_job(pool, job, JobOutcome{Outcome::NoWorkers, {}, message, {}, 0.0});
}

}  // namespace ppmpi
