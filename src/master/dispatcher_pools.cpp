// Dispatcher, pool side: creating and sizing pools, queueing and handing out jobs.
#include "ppmpi/master/dispatcher.hpp"

#include <algorithm>
#include <set>
#include <utility>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"

namespace ppmpi {

Dispatcher::Dispatcher(Transport& transport, Launcher& launcher, DispatcherOptions options)
    : transport_(transport), launcher_(launcher), options_(std::move(options)), now_(Clock::now()) {
    for (PeerId peer : launcher_.static_peers()) {
        WorkerRecord record;
        record.peer = peer;
        record.label = launcher_.describe(peer);
        workers_.emplace(peer, std::move(record));
    }
}

Pool& Dispatcher::pool_at(PoolId pool) {
    auto it = pools_.find(pool);
    if (it == pools_.end()) throw PpmpiError("unknown pool " + std::to_string(pool));
    return it->second;
}

const Pool& Dispatcher::pool_at(PoolId pool) const {
    return const_cast<Dispatcher*>(this)->pool_at(pool);
}

std::size_t Dispatcher::members(PoolId pool) const {
    std::size_t count = 0;
    for (const auto& [peer, worker] : workers_)
        if (worker.pool == pool && !worker.linked &&
            (worker.phase == Phase::Waiting || worker.phase == Phase::Active))
            ++count;
    return count + pool_at(pool).staffing.deferred_spawns;
}

PoolId Dispatcher::create_pool(const PoolSpec& spec, std::shared_ptr<JobTable> jobs) {
    PoolId id = next_pool_++;
    pools_.emplace(id, Pool(spec, std::move(jobs)));
    try {
        add_workers(id, spec.ncpus);
    } catch (...) {
        destroy_pool(id);
        throw;
    }
    return id;
}

void Dispatcher::resize_pool(PoolId pool, std::size_t ncpus) {
    std::size_t now = members(pool);
    if (ncpus > now) add_workers(pool, ncpus - now);
    if (ncpus < now) remove_workers(pool, now - ncpus);
    pool_at(pool).set_ncpus(ncpus);
    if (ncpus > 0) pool_at(pool).staffing.no_workers.clear();
}

// The peers of the workers `which` selects, lowest first (a pool takes ranks 1, 2, ... of an
// mpirun world in order, and gives back the last ones it took).
std::vector<PeerId>
Dispatcher::in_order(const std::function<bool(const WorkerRecord&)>& which) const {
    std::vector<PeerId> peers;
    for (const auto& [peer, worker] : workers_)
        if (which(worker)) peers.push_back(peer);
    std::sort(peers.begin(), peers.end());
    return peers;
}

// Workers not spawned yet first, then ones not started, idle ones, then busy ones (which finish
// their jobs); the highest peers first.
void Dispatcher::remove_workers(PoolId pool, std::size_t count) {
    Pool& p = pool_at(pool);
    std::size_t unspawned = std::min(count, p.staffing.deferred_spawns);
    p.staffing.deferred_spawns -= unspawned;
    count -= unspawned;
    auto in_phase = [pool](Phase phase) {
        return [pool, phase](const WorkerRecord& w) {
            return w.pool == pool && w.phase == phase && !w.linked;
        };
    };
    std::vector<PeerId> waiting = in_order(in_phase(Phase::Waiting));
    for (auto peer = waiting.rbegin(); peer != waiting.rend() && count > 0; ++peer) {
        WorkerRecord& worker = workers_.at(*peer);
        --count;
        if (launcher_.in_world(*peer)) {
            worker.pool.reset();  // a world rank goes back to the unclaimed ones
        } else {
            say_shutdown(worker);  // a spawned one is told to leave (after its Hello)
        }
    }
    std::vector<PeerId> active = in_order(in_phase(Phase::Active));
    for (int pass = 0; pass < 2 && count > 0; ++pass) {
        for (auto peer = active.rbegin(); peer != active.rend() && count > 0; ++peer) {
            WorkerRecord& worker = workers_.at(*peer);
            if (worker.phase != Phase::Active) continue;  // retired in the first pass
            if (pass == 0 && !p.scheduler().in_flight(*peer).empty()) continue;
            p.scheduler().retire_worker(*peer);
            worker.phase = Phase::Retiring;
            --count;
        }
    }
}

void Dispatcher::submit(PoolId pool, JobId job, const std::string& key, Bytes bundle,
                        Bytes args, Clock::duration timeout, Buffers arg_buffers,
                        std::size_t nranks) {
    Pool& p = pool_at(pool);
    if (p.destroyed()) throw DestroyedError("the server was destroyed");
    QueuedJob queued;
    queued.key = key;
    queued.args = std::move(args);
    queued.arg_buffers = std::move(arg_buffers);
    queued.timeout = timeout;
    queued.nranks = nranks;
    p.submit(job, std::move(queued), std::move(bundle));
}

bool Dispatcher::cancel(PoolId pool, JobId job, bool running_too) {
    Pool& p = pool_at(pool);
    if (p.destroyed() || p.queued().count(job) == 0) return false;  // over, or never here
    if (p.job(job).nranks > 0) {
        if (p.gangs().running(job) && !running_too) return false;
        end_gang(p, job, Outcome::Cancelled);
        end_job(p, job, JobOutcome{Outcome::Cancelled, {}, "cancelled", {}, 0.0});
        return true;
    }
    auto worker = p.scheduler().worker_of(job);
    if (worker && !p.job(job).started) {
        // Sent, but waiting behind the worker's running job: cancelled like a queued one (the
        // worker still runs it; its result is dropped).
        end_job(p, job, JobOutcome{Outcome::Cancelled, {}, "cancelled", {}, 0.0});
        return true;
    }
    if (worker && !running_too) return false;
    end_job(p, job, JobOutcome{Outcome::Cancelled, {}, "cancelled", {}, 0.0});
    if (!worker) return true;
    orphan_children(p, *worker, /*stop_running=*/true);  // its descendants are cancelled too
    stop_worker(workers_.at(*worker), "its job was cancelled");
    return true;
}

void Dispatcher::destroy_pool(PoolId pool) {
    Pool& p = pool_at(pool);
    if (p.destroyed()) return;
    p.destroy();
    p.jobs().fail_unfinished(Outcome::Destroyed, "Server was destroyed before the job completion");
    for (auto& [peer, worker] : workers_)
        if (worker.pool == pool) say_shutdown(worker);
    p.jobs().wake_all();
}

PoolStats Dispatcher::stats(PoolId pool) const {
    const Pool& p = pool_at(pool);
    PoolStats out = p.stats();
    out.workers = members(pool);
    for (const auto& [peer, worker] : workers_)
        out.starting += worker.pool == pool && !worker.hello && worker.phase != Phase::Gone;
    out.starting += p.staffing.deferred_spawns;
    for (const auto& [job, queued] : p.queued()) {
        auto worker = p.scheduler().worker_of(job);
        if (!worker || !queued.started) continue;
        double seconds = std::chrono::duration<double>(now_ - queued.started_at).count();
        out.running_jobs.push_back(RunningJob{job, workers_.at(*worker).label, seconds});
    }
    return out;
}

std::size_t Dispatcher::pool_size(PoolId pool) const { return members(pool); }

bool Dispatcher::dispatch_jobs(Pool& pool) {
    if (pool.scheduler().pending() == 0) {
        take_back_for_idle(pool);
        return false;
    }
    pool.notice_long_runs(now_, last_drained_);
    auto assignments = pool.scheduler().assign();
    for (const auto& [job, worker] : assignments) {
        send_task(pool, worker, job, pool.job(job));
        pool.mark_sent(job, ++send_order_);
        if (log_enabled(LogLevel::Debug))
            log_debug("job " + std::to_string(job) + " sent to worker " +
                      workers_.at(worker).label);
    }
    // After all of them have their send order: only each worker's oldest job starts now.
    std::set<PeerId> topped_up;
    for (const auto& [job, worker] : assignments)
        if (topped_up.insert(worker).second) pool.start_head(worker, now_);
    take_back_for_idle(pool);
    return !assignments.empty();
}

// The job's function bundle first if the worker has not had it (protocol step 3). The args stay
// here until the result is in, so the job can be sent again if needed.
void Dispatcher::send_task(Pool& pool, PeerId worker, JobId job, const QueuedJob& queued) {
    if (!known_.knows(worker, queued.key)) {
        const Bytes& bundle = pool.functions().bundle(queued.key);
        queue_message(worker, Message{FunctionDef{queued.key}, bundle});
        known_.learn(worker, queued.key);
        pool.count_function_def(bundle.size());
    }
    // A ppmpi-server may spin for a job its client waits for alone (link_relay.hpp).
    bool awaited = LinkedLauncher::linked(worker) && pool.jobs().unfinished() == 1;
    queue_message(worker, Message{Task{job, queued.key, awaited}, queued.args, queued.arg_buffers});
    pool.count_task();
}

// Jobs waiting behind a long one, asked back for idle workers (Pool::take_back_for_idle).
void Dispatcher::take_back_for_idle(Pool& pool) {
    for (const auto& [worker, job] : pool.take_back_for_idle(now_))
        queue_message(worker, Message{Withdraw{job}, {}});
}

// The worker gave the job back (Pool::withdrawn): a worker whose job waits for it runs it.
bool Dispatcher::on_withdrawn(WorkerRecord& worker, Pool& pool, JobId job) {
    if (!pool.withdrawn(worker.peer, job)) return false;
    if (auto helper = pool.children().take_helper(job)) help_with(pool, job, *helper);
    return true;
}

void Dispatcher::retire_idle_workers(Pool& pool) {
    for (PeerId id : pool.scheduler().idle_retiring_workers()) {
        pool.scheduler().remove_worker(id);
        say_shutdown(workers_.at(id));
    }
}

}  // namespace ppmpi
