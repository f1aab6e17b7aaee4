#include "ppmpi/master/master.hpp"

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"

#include <iomanip>
#include <sstream>

namespace ppmpi {

Master::Master(EnvironmentFactory factory, DispatcherOptions options, Duration start_timeout)
    : options_(std::move(options)) {
    std::promise<void> started;
    auto ready = started.get_future();
    thread_ = std::thread(&Master::run, this, std::move(factory), std::move(started));
    if (ready.wait_for(start_timeout) != std::future_status::ready) {
        // The thread is stuck in start-up (e.g. MPI_Init waiting for a launcher that never
        // answers). It cannot be interrupted; detach it and report.
        stopping_ = true;
        thread_.detach();
        std::ostringstream text;
        text << "MPI start-up did not finish within " << std::fixed << std::setprecision(0)
             << start_timeout.count() << " s";
        throw PpmpiError(text.str());
    }
    try {
        ready.get();
    } catch (...) {
        thread_.join();
        throw;
    }
}

Master::~Master() {
    try {
        stop(grace_);
    } catch (const std::exception& e) {
        log_error(std::string("error while stopping the dispatcher: ") + e.what());
    }
}

void Master::post(std::function<void(Dispatcher&)> command) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        if (stopping_) throw DestroyedError("the ppmpi runtime has been shut down");
        commands_.push_back(std::move(command));
    }
    wakeup_.notify();
}

bool Master::stop(Duration grace, Duration stuck_margin) {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        grace_ = grace;
        stopping_ = true;
    }
    wakeup_.notify();
    if (!thread_.joinable()) return true;
    // Bounded: the thread's own shutdown is bounded by `grace`; only an MPI call that never
    // returns keeps it longer, and waiting for that would hang the process at exit.
    if (ended_future_.wait_for(grace + stuck_margin) != std::future_status::ready) {
        std::ostringstream waited;
        waited << std::setprecision(3) << (grace + stuck_margin).count();
        log_error("the dispatcher thread did not end within " + waited.str() + " s: " +
                  (ending_mpi_.load()
                       ? "MPI's end (disconnect, finalize) still waits for ranks that have not "
                         "ended theirs (slow with hundreds of ranks on a few cores, or a rank "
                         "that left without it); leaving without it"
                       : "it is stuck inside an MPI call (Open MPI 4.1 with PMIx 4 can hang in "
                         "MPI_Comm_spawn for good); leaving without ending MPI"));
        thread_.detach();
        return false;
    }
    thread_.join();
    return true;
}

void Master::run(EnvironmentFactory factory, std::promise<void> started) {
    MasterEnvironment env;
    std::unique_ptr<Dispatcher> dispatcher;
    try {
        env = factory();
        dispatcher = std::make_unique<Dispatcher>(*env.transport, *env.launcher, options_);
    } catch (...) {
        started.set_exception(std::current_exception());
        ended_.set_value();
        return;
    }
    dispatcher_ = dispatcher.get();
    borrowable_ = env.borrowable;
    running_ = true;  // borrowers may come from here on
    started.set_value();
    bool clean = false;
    std::unique_lock<std::timed_mutex> alone;  // once held, no borrower runs a turn again
    try {
        loop(*dispatcher);
        alone = baton_.close();
        drain_commands(*dispatcher);
        clean = dispatcher->shutdown(std::chrono::duration_cast<Clock::duration>(grace_));
    } catch (const std::exception& e) {
        log_error(std::string("dispatcher stopped by an error: ") + e.what());
    }
    if (!alone.owns_lock()) alone = baton_.close();
    ending_mpi_ = true;
    std::vector<ProcessIdentity> spawned = dispatcher->spawned_here();
    dispatcher_ = nullptr;
    dispatcher.reset();
    end_mpi(env, clean);
    see_ended(spawned);
    running_ = false;
    ended_.set_value();
}

void Master::end_mpi(MasterEnvironment& env, bool clean) {
    if (env.before_close) env.before_close(clean);
    env.launcher.reset();
    env.transport.reset();
    env.session.reset();
}

// The workers spawned here end before this process does (Dispatcher::spawned_here says why).
// One whose job still runs gives it 2 s (WorkerOptions::exit_grace) before it exits itself;
// past that, or stuck in MPI's end, it is killed: its job's result is wanted by nobody now.
void Master::see_ended(const std::vector<ProcessIdentity>& spawned) {
    constexpr auto kPatience = std::chrono::milliseconds(3000);
    std::size_t killed = end_processes(spawned, kPatience);
    if (killed > 0)
        log_debug(std::to_string(killed) + " worker process(es) still ran after MPI's end: killed");
}

void Master::drain_commands(Dispatcher& dispatcher) {
    std::vector<std::function<void(Dispatcher&)>> batch;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        batch.swap(commands_);
    }
    for (auto& command : batch) {
        try {
            command(dispatcher);
        } catch (const std::exception& e) {
            // Commands that answer report through their promise; this is a fire-and-forget
            // one, and one bad command must not stop the loop that serves every job.
            log_error(std::string("dispatcher command failed: ") + e.what());
        }
    }
}

// One turn of the loop, by whichever thread holds the baton.
bool Master::turn(Dispatcher& dispatcher) {
    if (failure_) std::rethrow_exception(failure_);
    drain_commands(dispatcher);
    auto now = Clock::now();
    last_turn_.store(now.time_since_epoch().count(), std::memory_order_relaxed);
    bool moved = dispatcher.step(now);
    spin_worthwhile_.store(dispatcher.results_within(BackoffPolicy{}.spin_for),
                           std::memory_order_relaxed);
    linked_.store(dispatcher.has_links(), std::memory_order_relaxed);
    quiet_.store(dispatcher.quiet(), std::memory_order_relaxed);
    return moved;
}

void Master::help_if_stalled(bool lone) {
    if (!borrowable_ || !running_ || stopping_) return;
    auto since = Clock::now().time_since_epoch() -
                 Clock::duration(last_turn_.load(std::memory_order_relaxed));
    if (since < kStallGap && !lone) return;
    Baton::Borrow borrow(baton_);
    borrow.try_turn([&] { return borrowed_turn(); }, std::chrono::microseconds(0));
}

void Master::loop(Dispatcher& dispatcher) {
    Backoff backoff;
    while (!stopping_) {
        auto active = baton_.owner_turn([&] { return turn(dispatcher); });
        if (!active) {  // a Python thread drives: stand down (it wakes us when it stops)
            wakeup_.wait_for(backoff.policy().max_sleep);
            backoff.reset();
        } else if (*active) {
            backoff.reset();
        } else if (idle_wait(dispatcher, backoff.next_delay(Clock::now(), spin_worthwhile_))) {
            backoff.reset();
        }
    }
}

// Sleeps `delay`; or, once the backoff reached its cap and every worker rings a doorbell,
// dozes until one sends, a thread here posts, or a periodic duty is due (doorbell.hpp): a long
// job's result is then seen at once, and an idle master wakes ~10 times a second, not 500.
// Where it cannot doze (world ranks ring only their own bells), a quiet master sleeps
// kQuietSleep at a time: polling every 2 ms cost an idle master with two world ranks 2-4 % of a
// core, and with no job out only arrivals, heartbeats and liveness checks are left, none due
// within 10 ms. A spin (no delay) only yields: each turn reads the links' sockets already, and
// a zero-timeout poll on them would add system calls to every spin and make every post() write
// the eventfd meanwhile (docs/performance.md). True if woken early.
bool Master::idle_wait(Dispatcher& dispatcher, std::chrono::microseconds delay) {
    constexpr auto kQuietSleep = std::chrono::milliseconds(10);
    if (delay.count() <= 0) return wakeup_.wait_for(delay);
    if (delay >= BackoffPolicy{}.max_sleep) {
        Doze plan;
        auto planned = baton_.owner_turn([&] { return dispatcher.plan_doze(plan); });
        if (planned.value_or(false)) {
            auto check = std::move(plan.arrived);  // under the baton, as every turn
            plan.arrived = [&] { return !check || baton_.owner_turn(check).value_or(true); };
            return wakeup_.doze(plan);
        }
        if (quiet_.load(std::memory_order_relaxed)) delay = kQuietSleep;
    }
    Doze sockets;  // remote servers' links: what arrives on them ends the sleep
    auto have = baton_.owner_turn([&] { return dispatcher.plan_socket_doze(sockets); });
    if (have.value_or(false)) {
        sockets.until = Clock::now() + delay;
        return wakeup_.doze(sockets);
    }
    return wakeup_.wait_for(delay);
}

bool Master::drive_until(const std::function<bool()>& done, Duration limit) {
    if (done()) return true;
    if (!borrowable_ || !running_ || stopping_) return false;
    Baton::Borrow borrow(baton_);
    auto until = Clock::now() + std::chrono::duration_cast<Clock::duration>(limit);
    // A first turn sends what was just submitted; then a result not due soon is waited for
    // asleep (on the job table), not by spinning here.
    auto spin_for = BackoffPolicy{}.spin_for;
    borrow.try_turn([&] { return borrowed_turn(); }, spin_for);
    // A remote server's result is a network round trip and a server turn away: a window of
    // one local round trip would end just before it (measured: 250-300 µs on loopback), and
    // the result would then wait for two wake-ups (the dispatcher thread's, then this one's).
    constexpr auto kLinkedWindow = std::chrono::microseconds(1000);
    auto window = !spin_worthwhile_ ? std::chrono::microseconds(0)
                  : linked_         ? kLinkedWindow
                                    : spin_for;
    borrow.drive([&] { return stopping_ || done(); }, [&] { return borrowed_turn(); }, window,
                 until);
    return done();
}

// A turn on a borrowing thread. An error stops the loop as it would on the dispatcher thread:
// it is kept and rethrown there.
bool Master::borrowed_turn() {
    if (dispatcher_ == nullptr || failure_) return false;
    try {
        return turn(*dispatcher_);
    } catch (...) {
        failure_ = std::current_exception();
        wakeup_.notify();
        return false;
    }
}

}  // namespace ppmpi
