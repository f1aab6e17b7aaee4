#include "ppmpi/core/scheduler.hpp"

#include <algorithm>

#include "ppmpi/core/errors.hpp"

namespace ppmpi {

std::size_t pipeline_depth(double mean_job_seconds, std::size_t max_depth) {
    if (max_depth <= 1 || mean_job_seconds < 0.0) return 1;
    double extra = kPipelineBudgetSeconds / std::max(mean_job_seconds, 1e-7);
    if (extra >= static_cast<double>(max_depth - 1)) return max_depth;
    return std::max<std::size_t>(2, 1 + static_cast<std::size_t>(extra));
}

Scheduler::Scheduler(std::size_t slots_per_worker)
    : slots_(slots_per_worker == 0 ? 1 : slots_per_worker) {}

void Scheduler::add_worker(WorkerId worker) {
    PPMPI_ENFORCE(workers_.count(worker) == 0, "worker ", worker, " added twice");
    workers_.emplace(worker, WorkerSlots{});
}

std::vector<JobId> Scheduler::remove_worker(WorkerId worker) {
    auto it = workers_.find(worker);
    if (it == workers_.end()) return {};
    std::vector<JobId> orphans(it->second.jobs.begin(), it->second.jobs.end());
    for (JobId job : orphans) running_.erase(job);
    workers_.erase(it);
    queue_.insert(queue_.begin(), orphans.begin(), orphans.end());
    return orphans;
}

void Scheduler::retire_worker(WorkerId worker) {
    auto it = workers_.find(worker);
    if (it != workers_.end()) it->second.retiring = true;
}

void Scheduler::enqueue(JobId job) { queue_.push_back(job); }

bool Scheduler::cancel_pending(JobId job) {
    auto it = std::find(queue_.begin(), queue_.end(), job);
    if (it == queue_.end()) return false;
    queue_.erase(it);
    alone_.erase(job);
    return true;
}

Scheduler::WorkerMap::iterator Scheduler::least_loaded_free_worker() {
    auto best = workers_.end();
    std::size_t limit = limit_;
    // Topped up once a quarter of its slots are free: 1 of 1 or 2, 16 of 64.
    std::size_t batch = std::max<std::size_t>(1, slots_ / 4);
    for (auto it = workers_.begin(); it != workers_.end(); ++it) {
        WorkerSlots& slots = it->second;
        if (slots.retiring || slots.alone || slots.jobs.size() >= limit) {
            slots.filling = false;
            continue;
        }
        if (!slots.filling && slots_ - slots.jobs.size() < batch) continue;  // wait for a batch
        if (best == workers_.end() || slots.jobs.size() < best->second.jobs.size()) best = it;
    }
    return best;
}

Scheduler::WorkerMap::iterator Scheduler::idle_worker() {
    for (auto it = workers_.begin(); it != workers_.end(); ++it)
        if (!it->second.retiring && it->second.jobs.empty()) return it;
    return workers_.end();
}

std::vector<Scheduler::Assignment> Scheduler::assign() {
    std::vector<Assignment> out;
    for (auto& [id, slots] : workers_) slots.filling = false;
    // Decided once per turn, from the queue as it stands.
    bool deep = queue_.size() >= deep_queue_ * std::max<std::size_t>(1, active_workers());
    limit_ = deep ? slots_ : 1;
    while (!queue_.empty()) {
        JobId job = queue_.front();
        bool alone = alone_.count(job) != 0;
        auto it = alone ? idle_worker() : least_loaded_free_worker();
        if (it == workers_.end()) break;  // in order: a job to run alone waits for an idle worker
        queue_.pop_front();
        it->second.alone = alone;
        it->second.filling = !alone;  // until full: this turn's jobs go out together
        it->second.jobs.insert(job);
        running_[job] = it->first;
        out.push_back({job, it->first});
    }
    return out;
}

bool Scheduler::complete(WorkerId worker, JobId job) {
    auto run = running_.find(job);
    if (run == running_.end() || run->second != worker) return false;
    running_.erase(run);
    WorkerSlots& slots = workers_.at(worker);
    slots.jobs.erase(job);
    slots.alone = false;
    alone_.erase(job);
    return true;
}

std::optional<WorkerId> Scheduler::worker_of(JobId job) const {
    auto it = running_.find(job);
    if (it == running_.end()) return std::nullopt;
    return it->second;
}

std::vector<JobId> Scheduler::in_flight(WorkerId worker) const {
    auto it = workers_.find(worker);
    if (it == workers_.end()) return {};
    return {it->second.jobs.begin(), it->second.jobs.end()};
}

std::vector<WorkerId> Scheduler::idle_retiring_workers() const {
    std::vector<WorkerId> out;
    for (const auto& [id, slots] : workers_)
        if (slots.retiring && slots.jobs.empty()) out.push_back(id);
    return out;
}

std::size_t Scheduler::active_workers() const {
    return static_cast<std::size_t>(std::count_if(
        workers_.begin(), workers_.end(), [](const auto& e) { return !e.second.retiring; }));
}

}  // namespace ppmpi
