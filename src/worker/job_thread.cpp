// The job thread's half of WorkerHost (worker.hpp): it takes work from the comm thread, runs
// it in the JobRunner, hands results back, and borrows the comm loop while it would only wait.
#include <algorithm>
#include <cstdio>
#include <iostream>
#include <thread>

#include "ppmpi/core/cpu_wait.hpp"
#include "ppmpi/core/process.hpp"
#include "ppmpi/worker/worker.hpp"

namespace ppmpi {

void WorkerHost::stop_job_thread() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        job_thread_stop_ = true;
        work_.clear();
    }
    work_ready_.notify_all();
    comm_wakeup_.notify();  // the job thread may have read the Shutdown while the comm thread dozed
}

// A result's buffers are sent from the memory of the objects the job returned. A job may return
// an array it keeps (a global, say) and change it in its next call: so the next job starts
// only once the previous result's buffers have left (bounded: stop_job_thread ends the wait).
void WorkerHost::wait_for_result_sends() {
    auto sent = [](const std::weak_ptr<void>& owner) { return owner.expired(); };
    while (!results_in_flight_.empty() && !job_thread_stop_) {
        results_in_flight_.erase(
            std::remove_if(results_in_flight_.begin(), results_in_flight_.end(), sent),
            results_in_flight_.end());
        if (!results_in_flight_.empty()) std::this_thread::sleep_for(std::chrono::microseconds(50));
    }
}

// Drives the comm loop on this thread while nothing is queued, for as long as turns keep
// moving or the spin window after the last movement lasts; the caller then sleeps.
void WorkerHost::drive_while_idle() {
    Transport* transport = transport_.load(std::memory_order_acquire);
    if (transport == nullptr || !borrowable_) return;
    Baton::Borrow borrow(baton_);
    auto has_work = [&] {
        std::lock_guard<std::mutex> lock(mutex_);
        return !work_.empty() || job_thread_stop_;
    };
    auto turn = [&] { return comm_turn(*transport, master_, Clock::now()); };
    // A job starts: the owner takes over within its stand-down sleep. Otherwise (idle) it is
    // woken now and polls with its backoff, unless it dozes anyway and nothing of ours moves.
    auto window = spin_worthwhile() ? BackoffPolicy{}.spin_for : std::chrono::microseconds(0);
    if (borrow.drive(has_work, turn, window) || nothing_in_flight(*transport))
        borrow.leave_owner_asleep();
}

// Whether the comm thread can go on dozing: no send of ours is unfinished (MPI moves data only
// inside calls, and a dozing thread makes none).
bool WorkerHost::nothing_in_flight(Transport& transport) const {
    return comm_dozing_.load() && transport.unfinished_sends(master_) == 0 &&
           !transport.transferring(Clock::now());
}

// A job's result leaves from the thread that ran it, in a borrowed turn, so the comm thread is
// not woken for it (each wake-up took ~50-90 us of CPU on the test VM, twice per job); false if
// the loop could not be borrowed now.
bool WorkerHost::send_result_here() {
    Transport* transport = transport_.load(std::memory_order_acquire);
    if (transport == nullptr || !borrowable_) return false;
    Baton::Borrow borrow(baton_);
    auto turn = [&] { return comm_turn(*transport, master_, Clock::now()); };
    bool sent = borrow.try_turn(turn, std::chrono::microseconds(200)).has_value();
    if (sent && nothing_in_flight(*transport)) borrow.leave_owner_asleep();
    return sent;
}

// MPI start-up (on the comm thread) cannot be interrupted, and Open MPI 4.1 with PMIx 4 can
// hang in it for good (a spawned process in PMIx_Init: openpmix issue 2735); the master gives
// up on such a worker after 60 s. Past first_contact_timeout it is an orphan: it ends itself,
// so that it does not keep its launcher (mpirun) waiting for good either.
void WorkerHost::exit_if_start_is_stuck() {
    if (mpi_started_.load() || job_thread_stop_ || exit_status_.load() != 0) return;
    if (Clock::now() - serve_started_ <= options_.first_contact_timeout) return;
    std::cerr << "ppmpi-worker: MPI start-up did not finish within "
              << options_.first_contact_timeout.count() / 1000 << " s; exiting" << std::endl;
    std::fflush(nullptr);
    std::_Exit(kStuckStartStatus);
}

// Polling without sleeping for the master's next frame pays only while jobs are short (a long
// job's successor is queued here already, or comes a round trip later: 250 us of spinning
// after each 100 ms job cost more than it saved, on every worker) and a core is spare.
bool WorkerHost::spin_worthwhile() const {
    constexpr double kShortJobSeconds = 0.002;
    return last_job_seconds_.load(std::memory_order_relaxed) < kShortJobSeconds &&
           core_to_spare();
}

// The comm thread dozes for urgent frames only (only_urgent_while_job_runs) and this thread now
// waits for any: it widens that doze itself (doorbell.hpp, step 4) and reads in a turn of its
// own what came before, rather than waking the comm thread only to doze again (each wake-up of
// it cost ~100 us of CPU per job among hundreds of ranks on 2 cores). Where it cannot, it
// wakes it. True if it ran that turn.
bool WorkerHost::widen_comm_doze() {
    if (!comm_only_urgent_.load()) return false;
    Transport* transport = transport_.load(std::memory_order_acquire);
    if (transport != nullptr && borrowable_ && comm_wakeup_.widen()) {
        comm_only_urgent_.store(false);
        Baton::Borrow borrow(baton_);
        auto turn = [&] { return comm_turn(*transport, master_, Clock::now()); };
        if (borrow.try_turn(turn, std::chrono::microseconds(200))) {
            if (nothing_in_flight(*transport)) borrow.leave_owner_asleep();
            return true;
        }
    }
    comm_wakeup_.notify();
    return false;
}

// The next item to execute, or nullopt when the job thread is to stop.
std::optional<Message> WorkerHost::next_work() {
    bool none = false;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        none = work_.empty();
    }
    // Only behind jobs too long to spin for, or on a crowded host: with short jobs and a core
    // to spare, widening in this thread's turn cost more than the comm thread's wake-up did
    // (no-op jobs to local and remote workers together: docs/remote-servers.md).
    // That turn is the one drive_while_idle would run (no spin window behind such jobs).
    bool turned = none && !spin_worthwhile() && widen_comm_doze();
    if (!turned) drive_while_idle();
    std::unique_lock<std::mutex> lock(mutex_);
    // Bounded (1 s: an idle worker wakes rarely) so a lost notification can never park this
    // thread for good.
    while (work_.empty() && !job_thread_stop_) {
        if (comm_only_urgent_.load()) comm_wakeup_.notify();  // see only_urgent_while_job_runs
        job_thread_waiting_ = true;
        work_ready_.wait_for(lock, std::chrono::seconds(1));
        job_thread_waiting_ = false;
        exit_if_start_is_stuck();
    }
    if (job_thread_stop_) return std::nullopt;
    Message item = std::move(work_.front());
    work_.pop_front();
    job_thread_busy_ = true;
    job_started_ = Clock::now();
    return item;
}

void WorkerHost::job_loop(JobRunner& runner) {
    for (;;) {
        std::optional<Message> next = next_work();
        if (!next) return;
        Message& item = *next;
        try {
            if (auto* w = std::get_if<Welcome>(&item.header)) {
                runner.configure(*w);
            } else if (auto* def = std::get_if<FunctionDef>(&item.header)) {
                runner.define(def->key, std::move(item.payload));
            } else if (auto* gang = std::get_if<Gang>(&item.header)) {
                next_gang_ = std::move(*gang);
            } else if (auto* task = std::get_if<Task>(&item.header)) {
                run_task(runner, *task, item);
            }
        } catch (const std::exception& e) {
            std::cerr << "ppmpi-worker: the job runner failed, worker ends: " << e.what()
                      << std::endl;
            exit_status_ = 3;
            job_thread_failed_ = true;
            job_thread_busy_ = false;
            stop_job_thread();
            comm_wakeup_.notify();
            return;
        }
        job_thread_busy_ = false;
        // The result leaves in a turn of this thread's, or (no borrowing now) from the comm
        // thread: within its short sleep, or woken now if it dozes. The result is queued before
        // comm_dozing_ is read, and the comm thread sets it before it checks for results: one
        // of the two sees the other.
        if (std::holds_alternative<Task>(item.header) && send_result_here()) continue;
        if (!borrowable_ || comm_dozing_.load()) comm_wakeup_.notify();
    }
}

void WorkerHost::run_task(JobRunner& runner, const Task& task, Message& item) {
    wait_for_result_sends();
    // Read once per job (a read of /proc costs ~15 us here): from the previous job's end, so the
    // wait includes this thread's wake-up for this job, which its wall time does not.
    static thread_local const ThreadCpuWait cpu_wait;
    static thread_local double waited_before = cpu_wait.seconds();
    // A parallel job's communicator: made with the job's other ranks (this thread waits for
    // them in MPI, the comm thread goes on answering the master), freed after the job.
    std::optional<std::int64_t> comm;
    if (next_gang_ && next_gang_->job_id == task.job_id && gang_comms_) {
        constexpr JobId kTags = 32768;  // MPI_TAG_UB is at least 32767
        comm = gang_comms_->open(next_gang_->ranks, static_cast<int>(task.job_id % kTags));
    }
    next_gang_.reset();
    in_parallel_job_ = comm.has_value();
    RunOutcome out = runner.run(task, std::move(item.payload), std::move(item.buffers), comm);
    if (comm) gang_comms_->close(*comm);
    in_parallel_job_ = false;
    double waited_after = cpu_wait.seconds();
    double waited = std::min(out.seconds, waited_after - waited_before);
    waited_before = waited_after;
    last_job_seconds_.store(out.seconds, std::memory_order_relaxed);
    for (const Buffer& b : out.buffers) results_in_flight_.push_back(b.owner);
    Message result{Result{task.job_id, out.status, out.seconds, waited}, std::move(out.payload),
                   std::move(out.buffers)};
    // Sent at once, never held back for a batch: if the next job kills this process, the
    // master must already have this result (or it would blame this job too).
    std::lock_guard<std::mutex> lock(mutex_);
    results_.push_back(std::move(result));
    // Children it never waited for: results that come for them from now on are dropped, not
    // kept for a job that is over (nested_jobs.cpp).
    children_.clear();
    child_results_.clear();
    asked_.clear();
}

}  // namespace ppmpi
