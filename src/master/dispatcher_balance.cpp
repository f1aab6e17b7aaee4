// Keeping a pool's work spread over its workers when the workload changes: a job waiting behind
// a busy worker is taken back for an idle one (protocol step 4), and long-running jobs update
// the job time before their results do (dispatcher.hpp).
#include <algorithm>

#include "ppmpi/core/log.hpp"
#include "ppmpi/master/dispatcher.hpp"

namespace ppmpi {

// Pipelined jobs wait on their worker behind its running one. When the queue is empty and a
// worker has nothing to do, such a job is asked back (protocol step 4) and runs there instead
// of behind a job that may be long (the queue keeps one job per worker waiting on it, so that
// none waits a round trip for its next job; without taking back, a job stuck behind a slow one
// waited for it while other workers idled). Only from behind a job that has run for
// kWorthTakingBack already: short jobs end before the answer would come.
void Dispatcher::take_back_for_idle(Pool& pool) {
    constexpr auto kWorthTakingBack = std::chrono::milliseconds(5);
    constexpr std::size_t kLookedAtPerTurn = 64;
    if (pool.scheduler.pending() > 0 || pool.scheduler.idle_workers() <= pool.withdrawing) return;
    std::size_t wanted = pool.scheduler.idle_workers() - pool.withdrawing;
    for (PeerId worker : pool.scheduler.loaded_workers(2, kLookedAtPerTurn)) {
        if (wanted == 0) break;
        auto head = head_job(pool, worker);
        if (!head || now_ - pool.queued.at(*head).started_at < kWorthTakingBack) continue;
        std::optional<JobId> last;
        std::uint64_t order = 0;
        for (JobId job : pool.scheduler.in_flight(worker)) {
            const QueuedJob& queued = pool.queued.at(job);
            if (job == head || queued.withdrawing || queued.send_order <= order) continue;
            last = job;
            order = queued.send_order;
        }
        if (!last) continue;
        pool.queued.at(*last).withdrawing = true;
        ++pool.withdrawing;
        --wanted;
        queue_message(worker, Message{Withdraw{*last}, {}});
    }
}

// The worker gave the job back (it had not started): it waits at the front of the queue.
bool Dispatcher::on_withdrawn(WorkerRecord& worker, Pool& pool, JobId job) {
    auto queued = pool.queued.find(job);
    if (queued == pool.queued.end() || !queued->second.withdrawing) return false;
    queued->second.withdrawing = false;
    --pool.withdrawing;
    if (!pool.scheduler.withdraw(worker.peer, job)) return false;
    ++pool.jobs_taken_back;
    if (auto helper = pool.children.take_helper(job)) help_with(pool, job, *helper);
    return true;
}

// The job time learnt from results lags a change of workload: after short jobs, long ones
// would go to the few workers the short ones engaged, in deep queues, while the rest idle
// (measured: 5 x 128 jobs of 100 ms after no-op jobs ran at 0.55 efficiency, 4 to 8 jobs per
// worker). Workers running jobs longer than twice the mean, and kLong (longer than a short
// job's round trip, which a job sent is counted running for), while no result came for as
// long, tell it before any result does. Both are judged as of the last time the master had read
// everything there was (last_drained_). A long-looking job alone is not enough: on a crowded
// host (128 ranks on 2 cores) no-op jobs looked 15-60 ms long, their workers waiting for a CPU
// or results unread behind a late master; read as long jobs, these kept the mean at 1-5 ms and
// every worker engaged, each woken for one job at a time. Their results still flowed.
void Dispatcher::notice_long_runs(Pool& pool) {
    constexpr auto kEvery = std::chrono::milliseconds(1);
    constexpr double kLong = 0.005;
    constexpr std::size_t kLookedAt = 64;
    if (pool.mean_job_seconds < 0.0 || pool.scheduler.idle_workers() == 0 ||
        now_ < pool.next_long_run_check)
        return;
    auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
    double expected = std::max(kLong, 2.0 * pool.mean_job_seconds);
    if (seconds(last_drained_ - pool.last_result_at) <= expected) return;
    pool.next_long_run_check = now_ + kEvery;
    double longest = 0.0;
    for (PeerId worker : pool.scheduler.loaded_workers(1, kLookedAt)) {
        auto head = head_job(pool, worker);
        if (!head || !pool.queued.at(*head).started) continue;
        longest = std::max(longest, seconds(last_drained_ - pool.queued.at(*head).started_at));
    }
    if (longest > expected) learn_job_time(pool, longest);
}

}  // namespace ppmpi
