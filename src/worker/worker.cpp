#include "ppmpi/worker/worker.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <thread>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/process.hpp"

namespace ppmpi {
namespace {

// Sends still in flight when we leave get this long (a dead master never completes them).
constexpr auto kSendDrain = std::chrono::seconds(2);

}  // namespace

WorkerHost::WorkerHost(WorkerEnvironmentFactory factory, WorkerOptions options)
    : factory_(std::move(factory)), options_(options) {}

int WorkerHost::serve(Executor& executor) {
    serve_started_ = Clock::now();
    std::thread comm(&WorkerHost::comm_main, this);
    executor.prepare();  // while MPI starts on the comm thread
    execute_loop(executor);
    comm.join();
    return exit_status_.load();
}

void WorkerHost::stop_executor() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        executor_stop_ = true;
        work_.clear();
    }
    work_ready_.notify_all();
    comm_wakeup_.notify();  // the executor may have read the Shutdown while the comm thread dozed
}

// A result's buffers are sent from the memory of the objects the job returned. A job may return
// an array it keeps (a global, say) and change it in its next call: so the next job starts
// only once the previous result's buffers have left (bounded: stop_executor ends the wait).
void WorkerHost::wait_for_result_sends() {
    auto sent = [](const std::weak_ptr<void>& owner) { return owner.expired(); };
    while (!results_in_flight_.empty() && !executor_stop_) {
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
        return !work_.empty() || executor_stop_;
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
    if (mpi_started_.load() || executor_stop_ || exit_status_.load() != 0) return;
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

// The next item to execute, or nullopt when the executor is to stop.
std::optional<Message> WorkerHost::next_work() {
    drive_while_idle();
    std::unique_lock<std::mutex> lock(mutex_);
    // Bounded (1 s: an idle worker wakes rarely) so a lost notification can never park this
    // thread for good.
    while (work_.empty() && !executor_stop_) {
        executor_waiting_ = true;
        work_ready_.wait_for(lock, std::chrono::seconds(1));
        executor_waiting_ = false;
        exit_if_start_is_stuck();
    }
    if (executor_stop_) return std::nullopt;
    Message item = std::move(work_.front());
    work_.pop_front();
    executor_busy_ = true;
    job_started_ = Clock::now();
    return item;
}

void WorkerHost::execute_loop(Executor& executor) {
    for (;;) {
        std::optional<Message> next = next_work();
        if (!next) return;
        Message& item = *next;
        try {
            if (auto* w = std::get_if<Welcome>(&item.header)) {
                executor.configure(*w);
            } else if (auto* def = std::get_if<FunctionDef>(&item.header)) {
                executor.define(def->key, std::move(item.payload));
            } else if (auto* task = std::get_if<Task>(&item.header)) {
                wait_for_result_sends();
                ExecOutcome out =
                    executor.run(*task, std::move(item.payload), std::move(item.buffers));
                last_job_seconds_.store(out.seconds, std::memory_order_relaxed);
                for (const Buffer& b : out.buffers) results_in_flight_.push_back(b.owner);
                Message result{Result{task->job_id, out.status, out.seconds},
                               std::move(out.payload), std::move(out.buffers)};
                // Sent at once, never held back for a batch: if the next job kills this
                // process, the master must already have this result (or it would blame this
                // job too).
                std::lock_guard<std::mutex> lock(mutex_);
                results_.push_back(std::move(result));
            }
        } catch (const std::exception& e) {
            std::cerr << "ppmpi-worker: the executor failed, worker ends: " << e.what() << std::endl;
            exit_status_ = 3;
            executor_failed_ = true;
            executor_busy_ = false;
            stop_executor();
            comm_wakeup_.notify();
            return;
        }
        executor_busy_ = false;
        // The result leaves in a turn of this thread's, or (no borrowing now) from the comm
        // thread: within its short sleep, or woken now if it dozes. The result is queued before
        // comm_dozing_ is read, and the comm thread sets it before it checks for results: one
        // of the two sees the other.
        if (std::holds_alternative<Task>(item.header) && send_result_here()) continue;
        if (!borrowable_ || comm_dozing_.load()) comm_wakeup_.notify();
    }
}

void WorkerHost::on_message(Message& message) {
    switch (kind_of(message.header)) {
        case Kind::Welcome:
            welcome_ = std::get<Welcome>(message.header);
            welcomed_ = true;
            [[fallthrough]];
        case Kind::FunctionDef:
        case Kind::Task: {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!shutdown_) work_.push_back(std::move(message));
            work_ready_.notify_one();
            break;
        }
        case Kind::Shutdown:
            shutdown_ = true;
            leave_now_ = std::get<Shutdown>(message.header).immediate;
            stop_executor();
            if (!leave_now_) outbox_.push_back(Message{Goodbye{}, {}});
            break;
        case Kind::Release:
            released_ = true;
            leave_now_ = !std::get<Release>(message.header).finalize;
            comm_wakeup_.notify();  // as for Shutdown (stop_executor)
            break;
        case Kind::Withdraw: withdraw(std::get<Withdraw>(message.header).job_id); break;
        case Kind::Heartbeat: break;
        default:
            std::cerr << "ppmpi-worker: unexpected " << kind_name(kind_of(message.header))
                      << " from the master" << std::endl;
    }
}

// Same host: a vanished master process is noticed within 100 ms, not after the time-out (and
// not looked for on every turn: a system call each).
// Protocol step 4: a task still waiting here goes back to the master; one that started (or is
// done) is not mentioned, its result comes as usual.
void WorkerHost::withdraw(JobId job) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto waiting = std::find_if(work_.begin(), work_.end(), [job](const Message& m) {
        const Task* task = std::get_if<Task>(&m.header);
        return task && task->job_id == job;
    });
    if (waiting == work_.end()) return;
    work_.erase(waiting);
    outbox_.push_back(Message{Result{job, ResultStatus::Withdrawn, 0.0}, {}});
}

bool WorkerHost::master_alive(Clock::time_point now) {
    auto timeout = welcomed_ ? std::chrono::milliseconds(welcome_.master_timeout_ms)
                             : options_.first_contact_timeout;
    if (now - last_from_master_ > timeout) return false;
    if (!welcomed_ || welcome_.master_pid <= 0 || now < next_master_check_) return true;
    next_master_check_ = now + std::chrono::milliseconds(100);
    static const std::string host = this_host_name();
    if (welcome_.master_host == host)
        master_process_ = ::kill(static_cast<pid_t>(welcome_.master_pid), 0) == 0 || errno != ESRCH;
    return master_process_;
}

// Results (and heartbeats) go out; true if anything was sent. A result is a sign of life as
// good as a heartbeat: a busy worker sends none (the master handles fewer frames).
bool WorkerHost::send_outbox(Transport& transport, PeerId master, Clock::time_point now) {
    auto interval = std::chrono::milliseconds(welcome_.heartbeat_ms);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        for (Message& r : results_) {
            if (!shutdown_) outbox_.push_back(std::move(r));
            ++jobs_done_;
        }
        if (!results_.empty()) next_heartbeat_ = now + interval;
        results_.clear();
    }
    if (welcomed_ && !shutdown_ && now >= next_heartbeat_) {
        next_heartbeat_ = now + interval;
        outbox_.push_back(Message{Heartbeat{jobs_done_}, {}});
    }
    if (outbox_.empty()) return false;
    for (Frame& frame : encode_frames(outbox_)) transport.post(master, std::move(frame));
    outbox_.clear();
    return true;
}

// Frames from the master, until none is waiting or one brought a task (the executor may be
// waiting for it: the rest are read next turn). True if anything came.
bool WorkerHost::receive(Transport& transport, PeerId master, Clock::time_point now) {
    bool active = false, task = false;
    while (!task) {
        auto envelope = transport.poll();
        if (!envelope) break;
        active = true;
        if (envelope->peer != master) continue;
        last_from_master_ = now;
        try {
            for (Message& m : decode_frame(envelope->frame, std::move(envelope->buffers))) {
                task |= kind_of(m.header) == Kind::Task;
                on_message(m);
            }
        } catch (const ProtocolError& e) {
            std::cerr << "ppmpi-worker: malformed frame from the master: " << e.what() << std::endl;
        }
    }
    return active;
}

// One turn of the comm loop; true if anything moved. Results leave before anything is read:
// the master may be waiting for them.
bool WorkerHost::comm_turn(Transport& transport, PeerId master, Clock::time_point now) {
    bool active = send_outbox(transport, master, now);
    active |= receive(transport, master, now);
    active |= send_outbox(transport, master, now);  // a Goodbye, once told to shut down
    return active || transport.transferring(now);
}

void WorkerHost::comm_main() {
    WorkerEnvironment env;
    try {
        env = factory_();
    } catch (const std::exception& e) {
        std::cerr << "ppmpi-worker: could not start: " << e.what() << std::endl;
        exit_status_ = 2;
        stop_executor();
        return;
    }
    mpi_started_ = true;
    awaits_release_ = env.awaits_release;
    ProcessIdentity self = this_process();
    Hello hello{self.pid, self.start_ticks, self.host};
    env.transport->post(env.master, encode_frame({Message{hello, {}}}));
    last_from_master_ = Clock::now();
    master_ = env.master;
    borrowable_ = env.borrowable;
    transport_.store(env.transport.get(), std::memory_order_release);
    bool clean = serve_master(*env.transport, env.master);
    stop_executor();
    auto alone = baton_.close();  // from here on only this thread calls the transport
    close(env, clean);
}

// One turn of the comm thread: the loop's turn, then whether the worker should end.
WorkerHost::Verdict WorkerHost::owner_turn(Transport& transport, PeerId master) {
    Clock::time_point now = Clock::now();
    Verdict verdict{comm_turn(transport, master, now), std::nullopt};
    if (leave_now_) {
        verdict.end = false;  // no disconnect, no finalize: they could wait forever
    } else if (shutdown_ && (!awaits_release_ || released_)) {
        verdict.end = true;
    } else if (executor_failed_) {
        verdict.end = false;  // the master sees a lost worker (no Goodbye)
    } else if (!master_alive(now)) {
        std::cerr << "ppmpi-worker: the master is gone; exiting" << std::endl;
        exit_status_ = 1;
        verdict.end = false;
    }
    return verdict;
}

// The comm loop; returns whether the master let this worker go in order.
bool WorkerHost::serve_master(Transport& transport, PeerId master) {
    Backoff backoff;
    for (;;) {
        auto verdict = baton_.owner_turn([&] { return owner_turn(transport, master); });
        if (!verdict) {  // the executor drives: stand down (it wakes us when it stops)
            comm_wakeup_.wait_for(backoff.policy().max_sleep);
            backoff.reset();
            continue;
        }
        if (verdict->end) return *verdict->end;
        if (verdict->active) {
            backoff.reset();
            continue;
        }
        // While a job runs, nothing this thread could catch by polling soon is urgent (the
        // job's result leaves from the executor thread), and the job shares this process's
        // core: the longest sleep then, with no spin; nor when a spin is not worth it.
        auto delay = executor_busy_ ? backoff.policy().max_sleep
                                    : backoff.next_delay(Clock::now(), spin_worthwhile());
        if (idle_wait(transport, master, delay)) backoff.reset();
    }
}

// Whether nothing here needs the comm thread before the master sends or a heartbeat is due:
// no result waits, and the executor sleeps until work comes or runs a job that has run a while
// (short jobs' results leave within the short sleeps, many per frame). Not between two jobs,
// nor while the executor drives the loop: the master would ring for every frame it sends.
bool WorkerHost::executor_quiet() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!results_.empty()) return false;
    if (!executor_busy_) return executor_waiting_ && work_.empty();
    return Clock::now() - job_started_ >= BackoffPolicy{}.max_sleep;
}

// Sleeps `delay`; or, when the executor is quiet and the master rings a doorbell, dozes until
// it sends, the executor has a result, or the next heartbeat is due (doorbell.hpp). True if
// woken early.
bool WorkerHost::idle_wait(Transport& transport, PeerId master, std::chrono::microseconds delay) {
    if (delay.count() > 0 && executor_quiet()) {
        Doze plan;
        plan.arrived = [this] {
            std::lock_guard<std::mutex> lock(mutex_);
            return !results_.empty();
        };
        // Under the baton: a borrowing executor changes this state in its turns.
        auto planned = baton_.owner_turn([&] {
            plan.until = next_heartbeat_;
            return welcomed_ && !shutdown_ && transport.plan_doze({master}, plan);
        });
        if (planned.value_or(false)) {
            // The transport's re-check may call MPI: under the baton, like every call (a
            // borrower driving meanwhile: do not sleep).
            auto check = std::move(plan.arrived);
            plan.arrived = [&] { return baton_.owner_turn(check).value_or(true); };
            comm_dozing_.store(true);  // before `arrived` is checked: see execute_loop
            bool woken = comm_wakeup_.doze(plan);
            comm_dozing_.store(false);
            return woken;
        }
    }
    return comm_wakeup_.wait_for(delay);
}

void WorkerHost::close(WorkerEnvironment& env, bool clean) {
    transport_.store(nullptr, std::memory_order_release);
    auto drain_until = Clock::now() + kSendDrain;
    while (clean && env.transport->unfinished_sends(env.master) > 0 && Clock::now() < drain_until) {
        env.transport->poll();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    if (env.before_close) env.before_close(clean);
    env.transport.reset();
    env.session.reset();
    // A job still running cannot be interrupted; it gets a grace period, then the process ends
    // so that no orphan outlives the master.
    auto grace_until = Clock::now() + options_.exit_grace;
    while (executor_busy_ && Clock::now() < grace_until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (executor_busy_) {
        std::fflush(nullptr);
        std::_Exit(exit_status_.load());
    }
}

}  // namespace ppmpi
