#include "ppmpi/core/job_table.hpp"

#include "ppmpi/core/errors.hpp"

namespace ppmpi {

JobId JobTable::create(JobId id, int group, bool notify) {
    std::lock_guard<std::mutex> lock(mutex_);
    PPMPI_ENFORCE(jobs_.count(id) == 0, "job id ", id, " reused");
    Record record;
    record.group = group;
    record.notify = notify;
    jobs_.emplace(id, std::move(record));
    ++unfinished_by_group_[group];
    ++unfinished_total_;
    return id;
}

void JobTable::mark_finished_locked(Record& record) {
    if (record.finished) return;
    record.finished = true;
    auto it = unfinished_by_group_.find(record.group);
    if (it != unfinished_by_group_.end() && --it->second == 0) unfinished_by_group_.erase(it);
    --unfinished_total_;
}

bool JobTable::finish(JobId id, JobOutcome outcome) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = jobs_.find(id);
        if (it == jobs_.end() || it->second.done) return false;
        Record& record = it->second;
        record.done = true;
        record.outcome = std::move(outcome);
        if (record.watch && !record.notify) notifications_.push_back(id);
        if (record.notify && !record.discard) {
            notifications_.push_back(id);
        } else {
            mark_finished_locked(record);
            if (record.discard) jobs_.erase(it);
        }
    }
    changed_.notify_all();
    return true;
}

std::size_t JobTable::fail_unfinished(Outcome outcome, const std::string& message) {
    std::size_t count = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (auto it = jobs_.begin(); it != jobs_.end();) {
            Record& record = it->second;
            if (record.done) {
                ++it;
                continue;
            }
            record.done = true;
            record.outcome = JobOutcome{outcome, {}, message, {}, 0.0};
            // No callback runs for a job that never completed: it finishes here.
            mark_finished_locked(record);
            ++count;
            it = record.discard ? jobs_.erase(it) : std::next(it);
        }
    }
    changed_.notify_all();
    return count;
}

bool JobTable::is_done(JobId id) const {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw UnknownJobError("unknown job " + std::to_string(id));
    return it->second.done;
}

bool JobTable::wait(JobId id, Duration timeout) const {
    std::unique_lock<std::mutex> lock(mutex_);
    auto done = [&] {
        auto it = jobs_.find(id);
        if (it == jobs_.end()) throw UnknownJobError("unknown job " + std::to_string(id));
        return it->second.done;
    };
    return changed_.wait_for(lock, timeout, done);
}

std::optional<JobOutcome> JobTable::take(JobId id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) throw UnknownJobError("unknown job " + std::to_string(id));
    if (!it->second.done) return std::nullopt;
    JobOutcome outcome = std::move(it->second.outcome);
    if (it->second.notify && !it->second.finished) {
        // Taken to run its callback: it finishes (and is forgotten) at mark_notified.
        it->second.discard = true;
        return outcome;
    }
    mark_finished_locked(it->second);
    jobs_.erase(it);
    return outcome;
}

void JobTable::forget(JobId id) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto it = jobs_.find(id);
    if (it == jobs_.end()) return;
    if (!it->second.done || !it->second.finished) {
        it->second.discard = true;  // still counts for wait_group until it is over
        return;
    }
    jobs_.erase(it);
}

std::vector<JobId> JobTable::next_notifications(Duration timeout) {
    std::unique_lock<std::mutex> lock(mutex_);
    changed_.wait_for(lock, timeout, [&] { return !notifications_.empty(); });
    std::vector<JobId> out(notifications_.begin(), notifications_.end());
    notifications_.clear();
    return out;
}

void JobTable::mark_notified(JobId id) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = jobs_.find(id);
        if (it != jobs_.end()) {
            mark_finished_locked(it->second);
            if (it->second.discard) jobs_.erase(it);
        }
    }
    changed_.notify_all();
}

bool JobTable::watch(JobId id) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto it = jobs_.find(id);
        if (it == jobs_.end()) return false;
        Record& record = it->second;
        if (record.notify || record.watch) return true;  // reported already, or will be
        record.watch = true;
        if (!record.done) return true;
        notifications_.push_back(id);
    }
    changed_.notify_all();
    return true;
}

bool JobTable::wait_group(int group, Duration timeout) const {
    std::unique_lock<std::mutex> lock(mutex_);
    return changed_.wait_for(lock, timeout, [&] {
        if (group < 0) return unfinished_total_ == 0;
        return unfinished_by_group_.count(group) == 0;
    });
}

std::size_t JobTable::unfinished(int group) const {
    std::lock_guard<std::mutex> lock(mutex_);
    if (group < 0) return unfinished_total_;
    auto it = unfinished_by_group_.find(group);
    return it == unfinished_by_group_.end() ? 0 : it->second;
}

void JobTable::wake_all() { changed_.notify_all(); }

}  // namespace ppmpi
