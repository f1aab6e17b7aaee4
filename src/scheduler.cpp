#include "ppmpi/scheduler.hpp"

#include <algorithm>

#include "ppmpi/errors.hpp"

namespace ppmpi {

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
    return true;
}

Scheduler::WorkerMap::iterator Scheduler::least_loaded_free_worker() {
    auto best = workers_.end();
    for (auto it = workers_.begin(); it != workers_.end(); ++it) {
        const WorkerSlots& slots = it->second;
        if (slots.retiring || slots.jobs.size() >= slots_) continue;
        if (best == workers_.end() || slots.jobs.size() < best->second.jobs.size()) best = it;
    }
    return best;
}

std::vector<Scheduler::Assignment> Scheduler::assign() {
    std::vector<Assignment> out;
    while (!queue_.empty()) {
        auto it = least_loaded_free_worker();
        if (it == workers_.end()) break;
        JobId job = queue_.front();
        queue_.pop_front();
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
    workers_.at(worker).jobs.erase(job);
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
