#include "ppmpi/core/scheduler.hpp"

#include <algorithm>
#include <cmath>

#include "ppmpi/core/errors.hpp"

namespace ppmpi {

std::size_t pipeline_depth(double mean_job_seconds, std::size_t max_depth) {
    if (max_depth <= 1) return 1;
    if (mean_job_seconds < 0.0) return 2;  // not known yet: one behind the running one
    double extra = kPipelineBudgetSeconds / std::max(mean_job_seconds, 1e-7);
    if (extra >= static_cast<double>(max_depth - 1)) return max_depth;
    return std::max<std::size_t>(2, 1 + static_cast<std::size_t>(extra));
}

std::size_t workers_worth_engaging(double mean_job_seconds) {
    if (mean_job_seconds < 0.0) return 0;  // not known: no limit
    double workers = (mean_job_seconds + kWorkerSecondsPerJob) / kMasterSecondsPerJob;
    return static_cast<std::size_t>(std::min(1e9, std::ceil(workers)));
}

Scheduler::Scheduler(std::size_t slots_per_worker)
    : slots_(slots_per_worker == 0 ? 1 : slots_per_worker) {}

namespace {
template <class Slots, class Bucket> void link_back(Bucket& bucket, Slots* slots) {
    slots->prev = bucket.tail;
    slots->next = nullptr;
    (bucket.tail ? bucket.tail->next : bucket.head) = slots;
    bucket.tail = slots;
    ++bucket.size;
}

template <class Slots, class Bucket> void unlink(Bucket& bucket, Slots* slots) {
    (slots->prev ? slots->prev->next : bucket.head) = slots->next;
    (slots->next ? slots->next->prev : bucket.tail) = slots->prev;
    slots->prev = slots->next = nullptr;
    --bucket.size;
}
}  // namespace

void Scheduler::place(WorkerSlots& slots) {
    if (slots.retiring) {
        if (slots.jobs.empty()) idle_retiring_.insert(slots.id);
        return;
    }
    if (slots.alone || slots.held) return;
    Buckets& buckets = slots.filling ? filling_ : ready_;
    if (buckets.size() <= slots.jobs.size()) buckets.resize(slots.jobs.size() + 1);
    link_back(buckets[slots.jobs.size()], &slots);
    ++placed_;
}

void Scheduler::unplace(WorkerSlots& slots) {
    if (slots.retiring) {
        idle_retiring_.erase(slots.id);
        return;
    }
    if (slots.alone || slots.held) return;
    unlink((slots.filling ? filling_ : ready_)[slots.jobs.size()], &slots);
    --placed_;
}

void Scheduler::add_worker(PeerId worker) {
    PPMPI_ENFORCE(workers_.count(worker) == 0, "worker ", worker, " added twice");
    WorkerSlots& slots = workers_[worker];
    slots.id = worker;
    place(slots);
    ++active_;
}

std::vector<JobId> Scheduler::remove_worker(PeerId worker) {
    auto it = workers_.find(worker);
    if (it == workers_.end()) return {};
    WorkerSlots& slots = it->second;
    unplace(slots);
    if (!slots.retiring) --active_;
    std::vector<JobId> orphans(slots.jobs.begin(), slots.jobs.end());
    for (JobId job : orphans) running_.erase(job);
    filled_.erase(std::remove(filled_.begin(), filled_.end(), &slots), filled_.end());
    workers_.erase(it);
    queue_.insert(queue_.begin(), orphans.begin(), orphans.end());
    waiting_.insert(orphans.begin(), orphans.end());
    return orphans;
}

void Scheduler::retire_worker(PeerId worker) {
    auto it = workers_.find(worker);
    if (it == workers_.end() || it->second.retiring) return;
    unplace(it->second);
    it->second.retiring = true;
    --active_;
    place(it->second);
}

void Scheduler::hold(PeerId worker, bool held) {
    auto it = workers_.find(worker);
    if (it == workers_.end() || it->second.held == held) return;
    unplace(it->second);
    it->second.held = held;
    place(it->second);
}

std::size_t Scheduler::load(PeerId worker) const {
    auto it = workers_.find(worker);
    return it == workers_.end() ? 0 : it->second.jobs.size();
}

void Scheduler::enqueue(JobId job, bool front) {
    if (front) {
        queue_.push_front(job);
    } else {
        queue_.push_back(job);
    }
    waiting_.insert(job);
}

// Out of the queue (a walk: a marked entry left there would come back to life if the job
// were queued again, as a lost worker's jobs are), onto the worker.
bool Scheduler::take_for(JobId job, PeerId worker) {
    auto it = workers_.find(worker);
    if (it == workers_.end() || waiting_.erase(job) == 0) return false;
    auto queued = std::find(queue_.begin(), queue_.end(), job);
    if (queued != queue_.end()) queue_.erase(queued);
    unplace(it->second);
    it->second.jobs.insert(job);
    place(it->second);
    running_[job] = worker;
    return true;
}

// Marked, and skipped when assign() reaches it: taking it out of the queue would cost a walk.
bool Scheduler::cancel_pending(JobId job) {
    if (waiting_.erase(job) == 0) return false;
    dropped_.insert(job);
    alone_.erase(job);
    return true;
}

// The least loaded worker that may take one more job now: one topped up in this assign() while
// under the limit, any other once a quarter of its slots are free (1 of 1 or 2, 16 of 64).
// None while more workers have jobs than the engaged limit (it fell: jobs got shorter): they
// drain, and those still busy when the number is down to the limit are the ones topped up.
Scheduler::WorkerSlots* Scheduler::least_loaded_free_worker() const {
    std::size_t batch = std::max<std::size_t>(1, slots_ / 4);
    std::size_t loads = std::min(limit_, std::max(ready_.size(), filling_.size()));
    std::size_t idle = ready_.empty() ? 0 : ready_[0].size;
    if (engaged_limit_ != 0 && placed_ - idle > engaged_limit_) return nullptr;
    bool engage_more = engaged_limit_ == 0 || placed_ - idle < engaged_limit_;
    for (std::size_t load = engage_more ? 0 : 1; load < loads; ++load) {
        if (load < filling_.size() && filling_[load].head) return filling_[load].head;
        if (load < ready_.size() && ready_[load].head && slots_ >= load + batch)
            return ready_[load].head;
    }
    return nullptr;
}

Scheduler::WorkerSlots* Scheduler::idle_worker() const {
    return ready_.empty() ? nullptr : ready_[0].head;
}

void Scheduler::take(JobId job, WorkerSlots& worker, bool alone) {
    unplace(worker);
    worker.jobs.insert(job);
    worker.alone = alone;
    if (!alone && !worker.filling) {
        worker.filling = true;  // until full: this turn's jobs go out together
        filled_.push_back(&worker);
    }
    place(worker);
    running_[job] = worker.id;
}

std::vector<Scheduler::Assignment> Scheduler::assign() {
    std::vector<Assignment> out;
    // Decided once per turn, from the queue as it stands. A short queue: one job behind each
    // running one at most (least loaded first, so idle workers are served before), and the
    // next job is there when the running one ends. Holding the last jobs here until a worker
    // came free cost each such worker a round trip: at 128 workers on 2 cores, all of them at
    // once, 17-45 ms before the last job of 100 ms jobs (scheduler.hpp).
    std::size_t workers = std::max<std::size_t>(1, active_);
    bool deep = pending() >= deep_queue_ * workers;
    limit_ = deep ? slots_ : std::min<std::size_t>(2, slots_);
    while (!queue_.empty()) {
        JobId job = queue_.front();
        if (dropped_.erase(job)) {
            queue_.pop_front();
            continue;
        }
        bool alone = alone_.count(job) != 0;
        WorkerSlots* worker = alone ? idle_worker() : least_loaded_free_worker();
        if (!worker) break;  // in order: a job to run alone waits for an idle worker
        queue_.pop_front();
        waiting_.erase(job);
        take(job, *worker, alone);
        out.push_back({job, worker->id});
    }
    for (WorkerSlots* worker : filled_) {
        if (!worker->filling) continue;
        unplace(*worker);
        worker->filling = false;
        place(*worker);
    }
    filled_.clear();
    return out;
}

bool Scheduler::complete(PeerId worker, JobId job) {
    auto run = running_.find(job);
    if (run == running_.end() || run->second != worker) return false;
    running_.erase(run);
    WorkerSlots& slots = workers_.at(worker);
    unplace(slots);
    slots.jobs.erase(job);
    slots.alone = false;
    place(slots);
    alone_.erase(job);
    return true;
}

bool Scheduler::withdraw(PeerId worker, JobId job) {
    if (!complete(worker, job)) return false;
    queue_.push_front(job);
    waiting_.insert(job);
    return true;
}

std::vector<PeerId> Scheduler::loaded_workers(std::size_t min_load, std::size_t count) const {
    std::vector<PeerId> out;
    for (std::size_t load = ready_.size(); load-- > min_load && out.size() < count;)
        for (const WorkerSlots* w = ready_[load].head; w && out.size() < count; w = w->next)
            out.push_back(w->id);
    return out;
}

std::optional<PeerId> Scheduler::worker_of(JobId job) const {
    auto it = running_.find(job);
    if (it == running_.end()) return std::nullopt;
    return it->second;
}

std::vector<JobId> Scheduler::in_flight(PeerId worker) const {
    auto it = workers_.find(worker);
    if (it == workers_.end()) return {};
    return {it->second.jobs.begin(), it->second.jobs.end()};
}

}  // namespace ppmpi
