#include "ppmpi/worker/worker.hpp"

#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <iostream>
#include <thread>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/exit_watch.hpp"
#include "ppmpi/core/process.hpp"

namespace ppmpi {
namespace {

// Sends still in flight when we leave get this long (a dead master never completes them).
constexpr auto kSendDrain = std::chrono::seconds(2);
// MPI's own ending (disconnect, finalize) waits for every process it is collective with; one
// that left without it (a lost worker; a master that ended before its Release reached every
// rank) would keep this process waiting for good (seen once with 512 world ranks on 2 cores).
// Past this bound the process exits without it.
constexpr auto kMpiEndBound = std::chrono::seconds(60);


}  // namespace

WorkerHost::WorkerHost(WorkerEnvironmentFactory factory, WorkerOptions options)
    : factory_(std::move(factory)), options_(options) {}

int WorkerHost::serve(JobRunner& runner) {
    serve_started_ = Clock::now();
    runner_ = &runner;
    runner.attach(*this);
    std::thread comm(&WorkerHost::comm_main, this);
    runner.prepare();  // while MPI starts on the comm thread
    job_loop(runner);
    comm.join();
    return exit_status_.load();
}

void WorkerHost::on_message(Message& message) {
    switch (kind_of(message.header)) {
        case Kind::Welcome:
            welcome_ = std::get<Welcome>(message.header);
            welcomed_ = true;
            [[fallthrough]];
        case Kind::FunctionDef:
        case Kind::Gang:
        case Kind::Task: {
            std::lock_guard<std::mutex> lock(mutex_);
            if (!shutdown_) work_.push_back(std::move(message));
            work_posted_ = true;  // the job thread is woken once the turn ends (serve_master)
            break;
        }
        case Kind::Shutdown:
            shutdown_ = true;
            leave_now_ = std::get<Shutdown>(message.header).immediate;
            stop_job_thread();
            if (!leave_now_) outbox_.push_back(Message{Goodbye{}, {}});
            break;
        case Kind::Release:
            released_ = true;
            leave_now_ = !std::get<Release>(message.header).finalize;
            comm_wakeup_.notify();  // as for Shutdown (stop_job_thread)
            break;
        case Kind::Withdraw: withdraw(std::get<Withdraw>(message.header).job_id); break;
        case Kind::Result: {  // a child's outcome, for the job here that waits for it (step 8)
            std::lock_guard<std::mutex> lock(mutex_);
            JobId child = std::get<Result>(message.header).job_id;
            if (children_.count(child)) child_results_[child] = std::move(message);
            work_posted_ = true;
            break;
        }
        case Kind::Heartbeat: break;
        default:
            std::cerr << "ppmpi-worker: unexpected " << kind_name(kind_of(message.header))
                      << " from the master" << std::endl;
    }
}

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

// A master on this host is judged by its process, as it judges its workers here: silence from a
// master whose process runs is starvation (hundreds of ranks starting on a few cores delayed its
// heartbeats past master_timeout, and workers that left then were replaced, adding more load),
// given kStarvedTimeouts timeouts; a stopped or silent master elsewhere is gone after one.
// A vanished master process is noticed within 100 ms, not after the time-out (and not looked
// for on every turn). Its exit is watched through a pidfd (a system call per check); its /proc
// state (stopped?), which costs far more and matters only to a silence, is read once it has
// been silent for half the timeout.
bool WorkerHost::master_alive(Clock::time_point now) {
    auto timeout = welcomed_ ? std::chrono::milliseconds(welcome_.master_timeout_ms)
                             : options_.first_contact_timeout;
    ProcessIdentity master{welcome_.master_pid, 0, welcome_.master_host};
    bool here = welcomed_ && judged_here(master);
    auto silent = now - last_from_master_;
    if (here && now >= next_master_check_ && master_state_ != ProcessState::Gone) {
        next_master_check_ = now + std::chrono::milliseconds(100);
        if (!master_exit_) {
            master_exit_ = std::make_unique<ProcessWatch>();
            master_exit_->watch(0, master);
        }
        bool exited = !master_exit_->exited().empty();
        master_state_ = exited                ? ProcessState::Gone
                        : silent > timeout / 2 ? process_state(master)
                                               : ProcessState::Running;
    }
    if (master_state_ == ProcessState::Gone) return false;
    if (silent <= timeout) return true;
    return here && master_state_ == ProcessState::Running && silent <= kStarvedTimeouts * timeout;
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
        for (Message& r : requests_) outbox_.push_back(std::move(r));
        requests_.clear();
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

// Frames from the master, until none is waiting or one brought a task (the job thread may be
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
        stop_job_thread();
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
    gang_comms_ = env.gangs;  // before any task can come (the job thread reads it then)
    transport_.store(env.transport.get(), std::memory_order_release);
    bool clean = serve_master(*env.transport, env.master);
    stop_job_thread();
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
    } else if (job_thread_failed_) {
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
        // Woken only now, with the mutex and the baton free: on a shared core a woken job thread
        // ran at once, then blocked on either (its job's result leaves in a turn of its own),
        // which cost two more context switches per task.
        if (work_posted_.exchange(false)) work_ready_.notify_one();
        if (!verdict) {  // the job thread drives: stand down (it wakes us when it stops)
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
        // job's result leaves from the job thread), and the job shares this process's
        // core: the longest sleep then, with no spin; nor when a spin is not worth it.
        auto delay = job_thread_busy_ ? backoff.policy().max_sleep
                                      : backoff.next_delay(Clock::now(), spin_worthwhile());
        if (idle_wait(transport, master, delay)) backoff.reset();
    }
}

// Whether nothing here needs the comm thread before the master sends or a heartbeat is due:
// no result waits, and the job thread sleeps until work comes, or runs a job (or was woken for
// work queued here: it runs it next). A job's result leaves from the job thread's own turn where
// it can borrow the loop; where it cannot, this thread sends it, and short jobs' results leave
// within its short sleeps, many per frame: it dozes only behind a job that has run a while.
bool WorkerHost::job_thread_quiet() {
    std::lock_guard<std::mutex> lock(mutex_);
    if (!results_.empty() || !requests_.empty()) return false;
    if (!job_thread_busy_ && work_.empty()) return job_thread_waiting_;
    if (!job_thread_busy_) return borrowable_ && !spin_worthwhile();
    return borrowable_ || Clock::now() - job_started_ >= BackoffPolicy{}.max_sleep;
}

// Sleeps `delay`; or, when the job thread is quiet and the master rings a doorbell, dozes until
// it sends, the job thread has a result, or the next heartbeat is due (doorbell.hpp). True if
// woken early.
bool WorkerHost::idle_wait(Transport& transport, PeerId master, std::chrono::microseconds delay) {
    if (delay.count() > 0 && job_thread_quiet()) {
        Doze plan;
        plan.arrived = [this] {
            std::lock_guard<std::mutex> lock(mutex_);
            return !results_.empty() || !requests_.empty();
        };
        // Under the baton: a borrowing job thread changes this state in its turns.
        auto planned = baton_.owner_turn([&] {
            plan.until = next_heartbeat_;
            return welcomed_ && !shutdown_ && transport.plan_doze({master}, plan);
        });
        if (planned.value_or(false)) {
            // The transport's re-check may call MPI: under the baton, like every call (a
            // borrower driving meanwhile: do not sleep).
            auto check = std::move(plan.arrived);
            plan.arrived = [&] { return baton_.owner_turn(check).value_or(true); };
            comm_dozing_.store(true);  // before `arrived` is checked: see job_loop
            plan.only_urgent = only_urgent_while_job_runs();
            bool woken = comm_wakeup_.doze(plan);
            comm_only_urgent_.store(false);
            comm_dozing_.store(false);
            return woken;
        }
    }
    return comm_wakeup_.wait_for(delay);
}

// While a job runs (or is about to: queued here for the job thread between jobs), only urgent
// frames need this thread (doorbell.hpp, step 4): the next tasks are read by the job thread in
// its turn at the job's end (send_result_here), so a pipelined worker is not woken for each of
// them. Not while a job waits for its children (wait_child): the task that helps it may come.
// The flag is set before the job thread's state is read, and the job thread clears job_thread_busy_
// and finds no work before it reads the flag, then widens the doze if it waits for work
// (next_work): one of the two sees the other, so no task waits on a sleeping pair.
bool WorkerHost::only_urgent_while_job_runs() {
    comm_only_urgent_.store(true);
    {
        std::lock_guard<std::mutex> lock(mutex_);
        bool between_jobs = children_.empty() && borrowable_ && !spin_worthwhile();
        if (job_thread_busy_.load() || (!work_.empty() && between_jobs)) return true;
    }
    comm_only_urgent_.store(false);
    return false;
}

void WorkerHost::close(WorkerEnvironment& env, bool clean) {
    transport_.store(nullptr, std::memory_order_release);
    auto drain_until = Clock::now() + kSendDrain;
    while (clean && env.transport->unfinished_sends(env.master) > 0 && Clock::now() < drain_until) {
        env.transport->poll();
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    {
        ExitUnlessDoneWithin bounded(kMpiEndBound, exit_status_.load(),
                                     "ppmpi-worker: MPI did not end within " +
                                         std::to_string(kMpiEndBound.count()) +
                                         " s (a process it waits for left without it); exiting");
        // A job may still run (it cannot be interrupted; see below). An ordinary one does not
        // use MPI, which ends under it; a parallel one may be inside a collective that
        // MPI_Finalize would wait for, so MPI is then left unended, as after an unclean end.
        bool in_order = clean && !in_parallel_job_;
        if (env.before_close) env.before_close(in_order);
        env.before_close = nullptr;  // it holds the session too: MPI ends below, not at exit
        env.transport.reset();
        // A parallel job stuck in a collective holds its communicator until the process ends.
        if (!job_thread_busy_) gang_comms_.reset();
        env.gangs.reset();
        env.session.reset();
    }
    // A job still running cannot be interrupted; it gets a grace period, then the process ends
    // so that no orphan outlives the master.
    auto grace_until = Clock::now() + options_.exit_grace;
    while (job_thread_busy_ && Clock::now() < grace_until)
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    if (job_thread_busy_) {
        std::fflush(nullptr);
        std::_Exit(exit_status_.load());
    }
}

}  // namespace ppmpi
