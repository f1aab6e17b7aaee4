// The worker's half of nested jobs (protocol step 8, children.hpp): a running job submits
// children and waits for them, running here those the master hands back to it.
#include "ppmpi/worker/worker.hpp"

#include <algorithm>

namespace ppmpi {
namespace {
// A child's id is made here, unlike the master's (which count up from 1): the top bit, this
// worker's id, and a count.
constexpr JobId kChildBit = JobId{1} << 63;
} // namespace

// Sent from this thread in a borrowed turn where it can be, else by the comm thread now.
void WorkerHost::post_request(Message request) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        requests_.push_back(std::move(request));
    }
    if (!send_result_here()) comm_wakeup_.notify();
}

JobId WorkerHost::submit_child(JobId parent,
                               const std::string& key,
                               Bytes bundle,
                               Bytes args,
                               Buffers buffers,
                               double timeout) {
    JobId child = 0;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        auto worker = static_cast<JobId>(welcome_.worker_id) & 0x7fffffff;
        child = kChildBit | (worker << 32) | (++children_made_ & 0xffffffff);
        children_.insert(child);
        if (keys_sent_.insert(key).second)
            requests_.push_back(Message{FunctionDef{key}, std::move(bundle)});
    }
    auto limit = static_cast<std::uint32_t>(std::clamp(timeout, 0.0, 4e6) * 1000);
    post_request(Message{Submit{child, parent, key, limit}, std::move(args), std::move(buffers)});
    return child;
}

// While it waits, the job's thread counts as not busy (the comm thread then wakes for the task
// that helps it, as for any task) and runs the awaited child if the master sends it here.
std::optional<Message> WorkerHost::wait_child(JobId child, double timeout) {
    auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                    std::chrono::duration<double>(std::max(0.0, timeout)));
    bool ask = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (timeout <= 0.0) return take_child(child); // a look (job.finished): nothing asked
        ask = !child_results_.count(child) && asked_.insert(child).second;
    }
    if (ask) post_request(Message{Waiting{child}, {}});
    std::unique_lock<std::mutex> lock(mutex_);
    // Not busy: a comm thread dozing for urgent frames only (while a job ran) would not wake
    // for the tasks that help (only_urgent_while_job_runs): it is woken to doze again.
    auto waiting = [this] {
        job_thread_busy_ = false;
        if (comm_only_urgent_.load()) comm_wakeup_.notify();
    };
    waiting();
    for (;;) {
        if (auto outcome = take_child(child)) {
            job_thread_busy_ = true;
            return outcome;
        }
        // The awaited child only: running here another pending child (a sibling's, an
        // ancestor's) could nest a job above the one it waits for, which could then never end.
        auto mine = std::find_if(work_.begin(), work_.end(), [&](const Message& m) {
            const Task* task = std::get_if<Task>(&m.header);
            return task && task->job_id == child;
        });
        if (mine != work_.end()) {
            Message item = std::move(*mine);
            work_.erase(mine);
            job_thread_busy_ = true;
            lock.unlock();
            run_inline(item);
            lock.lock();
            waiting();
            continue;
        }
        if (Clock::now() >= until || job_thread_stop_) break;
        job_thread_waiting_ = true;
        work_ready_.wait_until(lock, std::min(until, Clock::now() + std::chrono::seconds(1)));
        job_thread_waiting_ = false;
    }
    job_thread_busy_ = true;
    return std::nullopt;
}

// (mutex_ held) The child's outcome, if it came; the child is then forgotten here.
std::optional<Message> WorkerHost::take_child(JobId child) {
    auto done = child_results_.find(child);
    if (done == child_results_.end()) return std::nullopt;
    Message outcome = std::move(done->second);
    child_results_.erase(done);
    children_.erase(child);
    asked_.erase(child);
    return outcome;
}

// A child run inside its parent's wait: the parent takes its outcome from here; the master is
// told only that it ended (it would send the outcome back to this worker).
void WorkerHost::run_inline(Message& item) {
    const Task task = std::get<Task>(item.header);
    RunOutcome out =
        runner_->run(task, std::move(item.payload), std::move(item.buffers), std::nullopt);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        results_.push_back(Message{Result{task.job_id, out.status, out.seconds, 0.0}, {}});
        child_results_[task.job_id] = Message{Result{task.job_id, out.status, out.seconds, 0.0},
                                              std::move(out.payload), std::move(out.buffers)};
    }
    if (!send_result_here()) comm_wakeup_.notify();
}

} // namespace ppmpi
