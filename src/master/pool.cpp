// Pool: one Python Server's jobs, their deadlines, the job time and the statistics (pool.hpp).
#include "ppmpi/master/pool.hpp"

#include <algorithm>

#include "ppmpi/master/linked_launcher.hpp"

namespace ppmpi {

Pool::Pool(const PoolSpec& spec, std::shared_ptr<JobTable> jobs)
    : spec_(spec), jobs_(std::move(jobs)) {
    scheduler_.set_slots_per_worker(pipeline_depth(-1.0, spec.slots_per_worker));
    scheduler_.set_deep_queue(spec.deep_queue);
}

void Pool::submit(JobId job, QueuedJob queued, Bytes bundle) {
    functions_.acquire(queued.key, std::move(bundle));
    std::size_t nranks = queued.nranks;
    queued_.emplace(job, std::move(queued));
    if (nranks > 0) {
        gangs_.enqueue(job, nranks);
    } else {
        scheduler_.enqueue(job);
    }
}

void Pool::submit_child(JobId child, QueuedJob queued, PeerId owner, JobId parent) {
    functions_.acquire(queued.key, {});
    queued_.emplace(child, std::move(queued));
    children_.add(child, owner, parent);
    scheduler_.enqueue(child, /*front=*/true);
}

std::optional<PeerId> Pool::remove_job(JobId job) {
    auto ran_on = scheduler_.worker_of(job);
    if (auto worker = ran_on) {
        scheduler_.complete(*worker, job);
    } else {
        scheduler_.cancel_pending(job);
    }
    auto queued = queued_.find(job);
    if (queued != queued_.end()) {
        deadlines_.erase({queued->second.deadline, job});
        withdrawing_ -= queued->second.withdrawing;
        functions_.release(queued->second.key);
        queued_.erase(queued);
    }
    return ran_on;
}

void Pool::mark_sent(JobId job, std::uint64_t send_order) {
    queued_.at(job).send_order = send_order;
}

bool Pool::mark_regrouped(JobId job) {
    return !std::exchange(queued_.at(job).regrouped, true);
}

std::optional<JobId> Pool::head_job(PeerId worker) const {
    std::optional<JobId> head;
    std::uint64_t first = 0;
    for (JobId job : scheduler_.in_flight(worker)) {
        std::uint64_t order = queued_.at(job).send_order;
        if (!head || order < first) {
            head = job;
            first = order;
        }
    }
    return head;
}

void Pool::start_head(PeerId worker, Clock::time_point now) {
    auto head = head_job(worker);
    if (head && !queued_.at(*head).started) start(*head, now);
}

void Pool::start(JobId job, Clock::time_point now) {
    QueuedJob& queued = queued_.at(job);
    queued.started = true;
    queued.started_at = now;
    if (queued.timeout > Clock::duration::zero()) {
        queued.deadline = now + queued.timeout;
        deadlines_.emplace(queued.deadline, job);
    }
}

Pool::Placed Pool::past_deadline(Clock::time_point now) const {
    Placed past;
    if (destroyed_) return past;
    for (const auto& [deadline, job] : deadlines_) {
        if (deadline > now) break;
        if (gangs_.running(job)) {
            past.emplace_back(job, std::nullopt);
        } else if (auto worker = scheduler_.worker_of(job)) {
            past.emplace_back(job, *worker);
        }
    }
    return past;
}

Clock::time_point Pool::next_deadline() const {
    return deadlines_.empty() ? Clock::time_point::max() : deadlines_.begin()->first;
}

void Pool::shorten_deadline(JobId job, Clock::time_point by) {
    QueuedJob& queued = queued_.at(job);
    if (queued.deadline <= by) return;
    deadlines_.erase({queued.deadline, job});
    queued.deadline = by;
    deadlines_.emplace(queued.deadline, job);
}

void Pool::unstart(JobId job, QueuedJob& queued) {
    deadlines_.erase({queued.deadline, job});
    queued.deadline = Clock::time_point::max();
    queued.started = false;
}

// Any job that was in flight on a worker that died while running `charged` runs alone from now
// on (Scheduler::run_alone); only `charged` itself counts the loss.
bool Pool::requeue(JobId job, const std::string& worker, std::optional<JobId> charged) {
    QueuedJob& queued = queued_.at(job);
    unstart(job, queued);
    withdrawing_ -= queued.withdrawing;
    queued.withdrawing = false;
    if (charged) scheduler_.run_alone(job);
    if (charged == job) queued.lost_on.push_back(worker);
    if (queued.lost_on.size() >= spec_.max_retries) return false;
    ++jobs_requeued_;
    return true;
}

bool Pool::requeue_gang(JobId job, const std::string& member) {
    QueuedJob& queued = queued_.at(job);
    unstart(job, queued);
    queued.lost_on.push_back(member);
    if (queued.lost_on.size() >= spec_.max_retries) return false;
    ++jobs_requeued_;
    gangs_.requeue(job, queued.nranks);
    return true;
}

// Pipelined jobs wait on their worker behind its running one. When the queue is empty and a
// worker has nothing to do, such a job is asked back (protocol step 4) and runs there instead
// of behind a job that may be long (the queue keeps one job per worker waiting on it, so that
// none waits a round trip for its next job; without taking back, a job stuck behind a slow one
// waited for it while other workers idled). Only from behind a job that has run for
// kWorthTakingBack already: short jobs end before the answer would come.
std::vector<std::pair<PeerId, JobId>> Pool::take_back_for_idle(Clock::time_point now) {
    constexpr auto kWorthTakingBack = std::chrono::milliseconds(5);
    constexpr std::size_t kLookedAtPerTurn = 64;
    std::vector<std::pair<PeerId, JobId>> asked;
    if (scheduler_.pending() > 0 || scheduler_.idle_workers() <= withdrawing_) return asked;
    std::size_t wanted = scheduler_.idle_workers() - withdrawing_;
    for (PeerId worker : scheduler_.loaded_workers(2, kLookedAtPerTurn)) {
        if (wanted == 0) break;
        auto head = head_job(worker);
        if (!head || now - queued_.at(*head).started_at < kWorthTakingBack) continue;
        std::optional<JobId> last;
        std::uint64_t order = 0;
        for (JobId job : scheduler_.in_flight(worker)) {
            const QueuedJob& queued = queued_.at(job);
            if (job == head || queued.withdrawing || queued.send_order <= order) continue;
            last = job;
            order = queued.send_order;
        }
        if (!last) continue;
        ask_back(*last);
        --wanted;
        asked.emplace_back(worker, *last);
    }
    return asked;
}

void Pool::ask_back(JobId job) {
    queued_.at(job).withdrawing = true;
    ++withdrawing_;
}

// The worker gave the job back (it had not started): it waits at the front of the queue.
bool Pool::withdrawn(PeerId worker, JobId job) {
    auto queued = queued_.find(job);
    if (queued == queued_.end() || !queued->second.withdrawing) return false;
    queued->second.withdrawing = false;
    --withdrawing_;
    if (!scheduler_.withdraw(worker, job)) return false;
    ++jobs_taken_back_;
    return true;
}

void Pool::learn_job_time(double seconds) {
    // A moving average over roughly the last 16 jobs: quick to follow a new workload.
    constexpr double kWeight = 1.0 / 16.0;
    mean_job_seconds_ = mean_job_seconds_ < 0.0
                            ? seconds
                            : mean_job_seconds_ + kWeight * (seconds - mean_job_seconds_);
    scheduler_.set_slots_per_worker(pipeline_depth(mean_job_seconds_, spec_.slots_per_worker));
    scheduler_.set_engaged_limit(workers_worth_engaging(mean_job_seconds_));
}

// The job time learnt from results lags a change of workload: after short jobs, long ones
// would go to the few workers the short ones engaged, in deep queues, while the rest idle
// (measured: 5 x 128 jobs of 100 ms after no-op jobs ran at 0.55 efficiency, 4 to 8 jobs per
// worker). Workers running jobs longer than twice the mean, and kLong (longer than a short
// job's round trip, which a job sent is counted running for), while no result came for as
// long, tell it before any result does. Both are judged as of `drained`, the last time the
// master had read everything there was. A long-looking job alone is not enough: on a crowded
// host (128 ranks on 2 cores) no-op jobs looked 15-60 ms long, their workers waiting for a CPU
// or results unread behind a late master; read as long jobs, these kept the mean at 1-5 ms and
// every worker engaged, each woken for one job at a time. Their results still flowed.
void Pool::notice_long_runs(Clock::time_point now, Clock::time_point drained) {
    constexpr auto kEvery = std::chrono::milliseconds(1);
    constexpr double kLong = 0.005;
    constexpr std::size_t kLookedAt = 64;
    if (mean_job_seconds_ < 0.0 || scheduler_.idle_workers() == 0 || now < next_long_run_check_)
        return;
    auto seconds = [](Clock::duration d) { return std::chrono::duration<double>(d).count(); };
    double expected = std::max(kLong, 2.0 * mean_job_seconds_);
    if (seconds(drained - last_result_at_) <= expected) return;
    next_long_run_check_ = now + kEvery;
    double longest = 0.0;
    for (PeerId worker : scheduler_.loaded_workers(1, kLookedAt)) {
        auto head = head_job(worker);
        if (!head || !queued_.at(*head).started) continue;
        longest = std::max(longest, seconds(drained - queued_.at(*head).started_at));
    }
    if (longest > expected) learn_job_time(longest);
}

void Pool::name_worker(PeerId worker, const std::string& label) {
    stats_[worker].label = label;
}

void Pool::record_result(PeerId worker, const std::string& label, double seconds,
                         Clock::time_point now) {
    WorkerStats& stats = stats_[worker];
    stats.label = label;
    ++stats.jobs;
    stats.seconds += seconds;
    last_result_at_ = now;
}

void Pool::count_function_def(std::size_t bytes) {
    ++function_defs_sent_;
    function_bytes_sent_ += bytes;
}

void Pool::start_failed(const std::string& why) {
    start_error_ = why;
    ++start_failures_;
}

PoolStats Pool::stats() const {
    PoolStats out;
    out.pending = scheduler_.pending();
    out.running = scheduler_.running();
    std::vector<PeerId> ids;
    for (const auto& [id, s] : stats_)  // remote servers' slots: in their link's status
        if (!LinkedLauncher::linked(id)) ids.push_back(id);
    std::sort(ids.begin(), ids.end());
    for (PeerId id : ids) out.per_worker.push_back(stats_.at(id));
    out.tasks_sent = tasks_sent_;
    out.function_defs_sent = function_defs_sent_;
    out.function_bytes_sent = function_bytes_sent_;
    out.workers_lost = workers_lost_;
    out.jobs_requeued = jobs_requeued_;
    out.jobs_taken_back = jobs_taken_back_;
    out.start_failures = start_failures_;
    out.start_error = start_error_;
    return out;
}

bool Pool::quiet() const {
    return scheduler_.pending() == 0 && scheduler_.running() == 0 && gangs_.pending() == 0 &&
           gangs_.active() == 0;
}

void Pool::destroy() {
    destroyed_ = true;
    staffing.deferred_spawns = 0;
    queued_.clear();
    deadlines_.clear();
    withdrawing_ = 0;
}

// A pool that waits for remote servers: with no worker usable (local or remote) for its limit,
// its waiting jobs fail instead of waiting for a server that may never come back.
bool Pool::no_worker_limit_passed(Clock::time_point now) {
    if (destroyed_ || scheduler_.active_workers() > 0 || queued_.empty()) {
        staffing.no_worker_since = Clock::time_point{};
        return false;
    }
    if (staffing.no_worker_since == Clock::time_point{}) staffing.no_worker_since = now;
    return now - staffing.no_worker_since >= staffing.no_worker_limit;
}

}  // namespace ppmpi
