// Dispatcher, message side: one loop turn, the worker handshake, results and shutdown.
#include "ppmpi/master/dispatcher.hpp"

#include <algorithm>
#include <thread>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"

namespace ppmpi {
namespace {
constexpr int kMaxFramesPerStep = 64;  // keep sending while a flood of results arrives
}

void Dispatcher::queue_message(PeerId peer, Message message) {
    std::vector<Message>& messages = outbox_[peer];
    if (messages.empty() && !held_.count(peer)) to_flush_.push_back(peer);
    messages.push_back(std::move(message));
}

// Only the peers with something queued: a flush costs the same with 10 workers as with 10,000.
// A spawned worker that has not said Hello may not be attached to the transport yet (its
// launch runs in the background): what it is owed (a Shutdown) is held until its Hello.
bool Dispatcher::flush_outbox() {
    bool sent = false;
    for (PeerId peer : to_flush_) {
        auto queued = outbox_.find(peer);
        if (queued == outbox_.end() || queued->second.empty()) continue;  // lost meanwhile
        auto worker = workers_.find(peer);
        if (worker != workers_.end() && !worker->second.hello && !launcher_.in_world(peer)) {
            held_.insert(peer);
            continue;
        }
        for (Frame& frame : encode_frames(queued->second)) transport_.post(peer, std::move(frame));
        outbox_.erase(queued);
        sent = true;
    }
    to_flush_.clear();
    return sent;
}

bool Dispatcher::dispatch_all() {
    bool active = false;
    for (auto& [id, pool] : pools_)
        if (!pool.destroyed()) {
            dispatch_gangs(id, pool);  // first: the workers it reserves get no single job
            active |= dispatch_jobs(pool);
        }
    return active;
}

// Jobs submitted since the last turn leave before anything is read, and reading stops after a
// frame that ended a job: a thread waiting for one result (Master::drive_until) then pays no
// extra poll (a system call over TCP) on either side of its round trip.
bool Dispatcher::step(Clock::time_point now) {
    now_ = now;
    bool active = dispatch_all();
    if (active) flush_outbox();
    std::uint64_t ended_before = jobs_ended_;
    bool drained = false;
    for (int i = 0; i < kMaxFramesPerStep && jobs_ended_ == ended_before; ++i) {
        auto envelope = transport_.poll();
        drained = !envelope;
        if (drained) break;
        handle_frame(std::move(*envelope));
        active = true;
    }
    lose_ended_links();
    if (relay_) active |= relay_->step(now);
    check_liveness(now, drained);
    check_deadlines(now);
    collect_launches();
    replace_lost_workers();
    start_deferred_spawns();
    fail_without_workers();
    active |= dispatch_all();
    for (auto& [id, pool] : pools_)
        if (!pool.destroyed()) retire_idle_workers(pool);
    send_heartbeats(now);
    active |= flush_outbox();
    return active || transport_.transferring(now) || (relay_ && relay_->transferring());
}

// Spinning pays when the master is the bottleneck: jobs so short that their results come
// back as fast as it can hand them out (or not timed yet). For longer jobs, only while a result
// is due within `window` and a core is spare: with one worker per core, a spinning thread takes
// its time from a worker (measured: the master at ~50 % of a core with 0.5 ms jobs on 2 workers,
// 2 cores) while the workers' pipelines cover a sleep.
bool Dispatcher::results_within(std::chrono::microseconds window) const {
    constexpr double kMasterBoundJobSeconds = 50e-6;
    double seconds = std::chrono::duration<double>(window).count();
    // A server with at most one job of its clients here, cued within two windows: a client
    // waiting for each result sends the next job ~100-150 µs after it (loopback, test VM), and
    // waking a server asleep on its socket cost the client's send 60-90 µs. Not longer, nor
    // with a client's jobs queued here (they come and go in batches): a spinning server takes
    // a core from the workers beside it, and from a client on this host unless that client
    // waits for its one job (LinkRelay::last_spin_cue, docs/remote-servers.md).
    if (relay_ && relay_->jobs() <= 1 && relay_->last_spin_cue() > now_ - 2 * window) return true;
    bool due = false;
    for (const auto& [id, pool] : pools_) {
        std::size_t in_flight = pool.scheduler().running();
        if (in_flight == 0) continue;
        double mean = pool.mean_job_seconds();
        if (mean < kMasterBoundJobSeconds) return true;  // also: not known yet
        std::size_t running = std::max<std::size_t>(1, std::min(in_flight, pool.spec().ncpus));
        due |= mean / static_cast<double>(running) < seconds;
    }
    return due && local_workers_ < cores_;
}

bool Dispatcher::quiet() const {
    for (const auto& [id, pool] : pools_)
        if (!pool.quiet()) return false;
    return true;
}

bool Dispatcher::plan_doze(Doze& plan) const {
    std::vector<PeerId> peers;
    for (const auto& [peer, worker] : workers_) {
        if (worker.phase == Phase::Gone) continue;
        if (peers.size() == Doze::kMaxBells) return false;  // more than one doze can wait on
        peers.push_back(peer);
    }
    if (!transport_.plan_doze(peers, plan)) return false;
    if (relay_ && !relay_->plan(plan.fds)) return false;  // a server's clients' sockets
    plan.until = std::min(next_heartbeat_, next_liveness_check_);
    for (const auto& [id, pool] : pools_)
        if (!pool.destroyed()) plan.until = std::min(plan.until, pool.next_deadline());
    return true;
}

void Dispatcher::handle_frame(Envelope envelope) {
    if (LinkedLauncher::linked(envelope.peer) && !workers_.count(envelope.peer))
        adopt_slot(envelope.peer);
    auto it = workers_.find(envelope.peer);
    if (it == workers_.end() || it->second.phase == Phase::Gone) return;
    monitor_.heard(envelope.peer, now_);
    it->second.excused = false;
    std::vector<Message> messages;
    try {
        messages = decode_frame(envelope.frame, std::move(envelope.buffers));
    } catch (const ProtocolError& e) {
        log_warning("dropping a malformed frame from worker " + it->second.label + ": " +
                    e.what());
        return;
    }
    for (Message& message : messages) handle(it->second, message);
}

void Dispatcher::handle(WorkerRecord& worker, Message& message) {
    switch (kind_of(message.header)) {
        case Kind::Hello: on_hello(worker, std::get<Hello>(message.header)); break;
        case Kind::Result:
            on_result(worker, std::get<Result>(message.header), message);
            break;
        case Kind::Goodbye: on_goodbye(worker); break;
        case Kind::FunctionDef:
        case Kind::Submit:
        case Kind::Waiting: handle_nested(worker, message); break;
        case Kind::Heartbeat: break;  // liveness counts every message (handle_frame)
        default:
            log_warning(std::string("unexpected ") + kind_name(kind_of(message.header)) +
                        " from worker " + worker.label);
    }
}

void Dispatcher::on_hello(WorkerRecord& worker, const Hello& hello) {
    if (worker.hello) return;
    worker.hello = true;
    worker.process = ProcessIdentity{hello.pid, hello.start_ticks, hello.host};
    processes_.watch(worker.peer, worker.process);
    worker.local = !worker.linked && worker.process.host == host_;
    local_workers_ += worker.local;
    if (!worker.linked) worker.label = hello.host + ":" + launcher_.describe(worker.peer);
    if (held_.erase(worker.peer)) to_flush_.push_back(worker.peer);
    if (worker.pool && worker.phase == Phase::Waiting) welcome(worker);
    if (!worker.pool && !launcher_.in_world(worker.peer)) say_shutdown(worker);  // a surplus
}

void Dispatcher::welcome(WorkerRecord& worker) {
    Pool& pool = pool_at(*worker.pool);
    if (pool.destroyed()) {
        say_shutdown(worker);
        return;
    }
    Welcome w;
    w.worker_id = worker.peer;
    w.master_pid = options_.master_pid;
    w.master_host = options_.master_host;
    w.sys_path = pool.spec().sys_path;
    w.cwd = pool.spec().cwd;
    // A worker of this host is judged by its process (dispatcher_faults.cpp): its heartbeats
    // only tell that a running process is not hung, so it beats every half worker_timeout.
    // Wake-ups are most of what an idle worker costs (0.1 % of a core each at 128 workers).
    auto beat = judged_here(worker.process)
                    ? std::max<Clock::duration>(options_.heartbeat, pool.spec().worker_timeout / 2)
                    : Clock::duration(options_.heartbeat);
    w.heartbeat_ms = static_cast<std::int32_t>(
        std::chrono::duration_cast<std::chrono::milliseconds>(beat).count());
    w.master_timeout_ms = static_cast<std::int32_t>(options_.master_timeout.count());
    queue_message(worker.peer, Message{std::move(w), {}});
    worker.phase = Phase::Active;
    monitor_.watch(worker.peer, pool.spec().worker_timeout, now_);
    pool.scheduler().add_worker(worker.peer);
    auto domain = launcher_.domain(worker.peer);
    pool.gangs().add_worker(worker.peer, domain.id, domain.rank);
    pool.name_worker(worker.peer, worker.label);
    log_debug("worker " + worker.label + " (pid " + std::to_string(worker.process.pid) +
              ") joined pool " + std::to_string(*worker.pool));
}

void Dispatcher::on_result(WorkerRecord& worker, const Result& result, Message& message) {
    if (!worker.pool) return;
    Pool& pool = pool_at(*worker.pool);
    // Not (or no longer) its job: timed out, cancelled, or taken back from a worker declared
    // lost. Dropping it keeps every job's outcome recorded exactly once.
    if (pool.gangs().member(result.job_id, worker.peer))
        return on_gang_result(worker, pool, result, message);
    if (pool.scheduler().worker_of(result.job_id) != worker.peer) return;
    if (result.status == ResultStatus::Withdrawn) {
        on_withdrawn(worker, pool, result.job_id);
        return;
    }
    if (result.status == ResultStatus::Lost || result.status == ResultStatus::Failed) {
        on_remote_loss(worker, pool, result, std::move(message.payload));
        return;
    }
    pool.record_result(worker.peer, worker.label, result.seconds, now_);
    JobOutcome outcome;
    outcome.outcome = result.status == ResultStatus::Ok ? Outcome::Ok : Outcome::RemoteError;
    outcome.payload = std::move(message.payload);
    outcome.buffers = std::move(message.buffers);
    outcome.worker = worker.label;
    outcome.seconds = result.seconds;
    if (log_enabled(LogLevel::Debug))
        log_debug("job " + std::to_string(result.job_id) + " done on worker " + worker.label +
                  " in " + std::to_string(result.seconds) + " s");
    end_job(pool, result.job_id, std::move(outcome));
    pool.learn_job_time(std::max(0.0, result.seconds - result.cpu_wait_seconds));
    pool.start_head(worker.peer, now_);
}

// The job's one outcome, delivered once it left the pool (Pool::remove_job).
void Dispatcher::end_job(Pool& pool, JobId job, JobOutcome outcome) {
    auto ran_on = pool.remove_job(job);
    if (end_child(pool, job, outcome, ran_on)) {
        // its parent's worker has it
    } else if (pool.relayed() && relay_) {
        relay_->on_end(job, outcome);
    } else {
        pool.jobs().finish(job, std::move(outcome));
    }
    ++jobs_ended_;
}

void Dispatcher::say_shutdown(WorkerRecord& worker) {
    if (worker.phase == Phase::Leaving || worker.phase == Phase::Gone) return;
    if (worker.pool) {
        auto it = pools_.find(*worker.pool);
        if (it != pools_.end()) {
            it->second.scheduler().remove_worker(worker.peer);
            leave_gang(it->second, worker);
        }
    }
    // A worker that cannot end in order leaves at once and says nothing more.
    bool immediate = !launcher_.can_end_in_order(worker.peer);
    log_debug("worker " + worker.label + " told to leave" + (immediate ? " at once" : ""));
    queue_message(worker.peer, Message{Shutdown{immediate}, {}});
    if (immediate) {
        gone(worker);
    } else {
        worker.phase = Phase::Leaving;
    }
}

void Dispatcher::on_goodbye(WorkerRecord& worker) {
    gone(worker);
    worker.goodbye = true;
    release(launcher_.said_goodbye(worker.peer));
}

// Protocol step 7: those that waited after their Goodbye may go now.
void Dispatcher::release(const std::vector<Launcher::Release>& releases) {
    for (const Launcher::Release& r : releases) {
        auto it = workers_.find(r.peer);
        if (it == workers_.end() || it->second.released || !it->second.goodbye) continue;
        it->second.released = true;
        queue_message(r.peer, Message{Release{r.finalize}, {}});
    }
}

// Whatever made a worker Gone, it is no longer watched, counted or known to hold functions.
void Dispatcher::gone(WorkerRecord& worker) {
    worker.phase = Phase::Gone;
    monitor_.forget(worker.peer);
    processes_.forget(worker.peer);
    known_.forget_worker(worker.peer);
    local_workers_ -= worker.local;
    worker.local = false;
}

// A worker only needs to know that we are alive within its master_timeout (30 s): a heartbeat
// every tenth of it, not every worker heartbeat interval, keeps 10,000 workers at ~3,000
// frames a second. One frame, encoded once, for all of them.
void Dispatcher::send_heartbeats(Clock::time_point now) {
    if (now < next_heartbeat_) return;
    next_heartbeat_ = now + std::max(options_.heartbeat, options_.master_timeout / 10);
    static const Bytes frame = encode_frame({Message{Heartbeat{}, {}}});
    // Workers that said Goodbye and still wait for Release: keep them sure we are alive.
    // Nobody else who is Gone (lost, or told to leave at once) hears from us again.
    for (auto& [peer, worker] : workers_) {
        bool awaits_release = worker.goodbye && !worker.released && launcher_.awaits_release(peer);
        if (!worker.hello || (worker.phase == Phase::Gone && !awaits_release)) continue;
        auto queued = outbox_.find(peer);
        if (queued != outbox_.end() && !queued->second.empty()) continue;  // that says it
        transport_.post(peer, Frame{frame, {}, false});
    }
}

std::size_t Dispatcher::live_workers() const {
    std::size_t count = 0;
    for (const auto& [peer, worker] : workers_)
        if (worker.phase != Phase::Gone) ++count;
    return count;
}

bool Dispatcher::shutdown(Clock::duration grace) {
    for (auto& [id, pool] : pools_) destroy_pool(id);
    for (auto& [peer, worker] : workers_) say_shutdown(worker);
    auto deadline = Clock::now() + grace;
    Backoff backoff;
    while (live_workers() > 0 && Clock::now() < deadline) {
        if (step(Clock::now())) {
            backoff.reset();
        } else {
            std::this_thread::sleep_for(backoff.next_delay(Clock::now()));
        }
    }
    bool clean = live_workers() == 0 && workers_lost_ == 0;
    std::vector<PeerId> released;
    for (auto& [peer, worker] : workers_) {
        if (!launcher_.awaits_release(peer) || !worker.goodbye || worker.released) continue;
        worker.released = true;
        queue_message(peer, Message{Release{launcher_.may_finalize(peer)}, {}});
        released.push_back(peer);
    }
    flush_outbox();
    // MPI_Finalize comes next: the Releases must have left by then (bounded: a rank that
    // stopped reading never completes them).
    auto release_deadline = Clock::now() + std::chrono::seconds(2);
    auto unsent = [&] {
        std::size_t n = 0;
        for (PeerId peer : released) n += transport_.unfinished_sends(peer);
        return n;
    };
    while (unsent() > 0 && Clock::now() < release_deadline) {
        transport_.poll();
        std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    kill_unanswering_workers();
    return clean && unsent() == 0;
}

}  // namespace ppmpi
