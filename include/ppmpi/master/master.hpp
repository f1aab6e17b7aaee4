// ppmpi/master/master.hpp: the dispatcher thread of rank 0, and the thread-safe door into it.
//
// The thread creates the environment (for MPI: MPI_Init, the transport, the launcher) itself,
// and it finalizes MPI when it ends. Python threads post commands (submit is fire-and-forget;
// others wait for their answer with a bound) and wait on JobTables with the GIL released. A
// Python thread waiting for a job may first drive the loop itself for a short window
// (drive_until, baton.hpp): then its result reaches it with no thread hand-off.
#pragma once

#include <atomic>
#include <chrono>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ppmpi/core/baton.hpp"
#include "ppmpi/core/errors.hpp"
#include "ppmpi/master/dispatcher.hpp"

namespace ppmpi {

// What the dispatcher thread creates at start. `session` is destroyed last (after the
// launcher and transport) and on the same thread: for MPI it finalizes.
struct MasterEnvironment {
    std::shared_ptr<void> session;
    std::unique_ptr<Transport> transport;
    std::unique_ptr<Launcher> launcher;
    // Called after shutdown with whether every worker said Goodbye; lets an MPI session skip
    // MPI_Finalize when a worker never answered (finalize would wait for it forever).
    std::function<void(bool all_workers_gone)> before_close;
    bool borrowable = true;  // the transport may be driven by any thread, one at a time
};

using EnvironmentFactory = std::function<MasterEnvironment()>;

class Master {
  public:
    using Duration = std::chrono::duration<double>;

    // Starts the thread; waits up to `start_timeout` for the environment (throws what the
    // factory threw, or PpmpiError on time-out).
    Master(EnvironmentFactory factory, DispatcherOptions options, Duration start_timeout);
    ~Master();
    Master(const Master&) = delete;
    Master& operator=(const Master&) = delete;

    // Runs `command` on the dispatcher thread and waits for it, up to `timeout`.
    template <class F> auto call(F command, Duration timeout) -> decltype(command(std::declval<Dispatcher&>()));
    // Runs `command` on the dispatcher thread soon; does not wait.
    void post(std::function<void(Dispatcher&)> command);

    JobId next_job_id() { return next_job_.fetch_add(1); }
    // Drives the dispatcher on the calling thread until done() (true), until `limit` passed,
    // or once nothing moved for a spin window (false; the dispatcher thread takes over).
    bool drive_until(const std::function<bool()>& done, Duration limit);
    // For a thread that just posted work: runs a turn here if the baton is free (never waits)
    // and either the dispatcher thread has not run one for kStallGap or `lone` (the job just
    // posted is the only one unfinished: its round trip is all its caller waits for, and the
    // turn sends it while the caller's Python is still building the job object). Woken by a
    // thread that keeps submitting, the dispatcher thread was measured waiting 1-3 ms for a
    // core behind it (the scheduler queues a wakee on its waker's core), with no job sent.
    void help_if_stalled(bool lone = false);
    static constexpr auto kStallGap = std::chrono::microseconds(50);
    // Shuts every worker down (bounded by `grace`) and ends the thread. Idempotent. False if
    // the thread did not end within grace + stuck_margin: it is inside an MPI call that has
    // not returned, which the log names: one that may never return (Open MPI 4.1 with PMIx 4
    // intermittently hangs in MPI_Comm_spawn, the spawned process in MPI_Init: openpmix issue
    // 2735), or MPI's own end, which waits for every rank (slow with hundreds of ranks on a few
    // cores). It is then left behind, detached; this object must outlive the process (the
    // caller keeps it).
    static constexpr Duration kStuckMargin{10.0};
    bool stop(Duration grace, Duration stuck_margin = kStuckMargin);
    bool running() const { return running_.load(); }

  private:
    void run(EnvironmentFactory factory, std::promise<void> started);
    void end_mpi(MasterEnvironment& env, bool clean);
    void see_ended(const std::vector<ProcessIdentity>& spawned);
    void loop(Dispatcher& dispatcher);
    bool idle_wait(Dispatcher& dispatcher, std::chrono::microseconds delay);
    bool turn(Dispatcher& dispatcher);
    bool borrowed_turn();
    void drain_commands(Dispatcher& dispatcher);

    DispatcherOptions options_;
    std::mutex mutex_;
    std::vector<std::function<void(Dispatcher&)>> commands_;
    Wakeup wakeup_;
    Baton baton_{wakeup_};
    Dispatcher* dispatcher_ = nullptr;  // guarded by baton_ once the thread runs
    bool borrowable_ = false;           // set before running_
    std::exception_ptr failure_;        // a borrowed turn's error, rethrown by the thread
    std::atomic<bool> stopping_{false};
    std::atomic<bool> running_{false};
    std::atomic<bool> ending_mpi_{false};  // past the workers' shutdown: in MPI's own end
    Duration grace_{5.0};
    std::atomic<JobId> next_job_{1};
    std::atomic<Clock::rep> last_turn_{0};  // when a turn last started (Clock ticks)
    std::atomic<bool> spin_worthwhile_{true};  // a result is likely within a spin window
    std::atomic<bool> linked_{false};  // remote servers' links are up: results take longer
    std::atomic<bool> quiet_{false};           // Dispatcher::quiet after the last turn
    std::thread thread_;
    std::promise<void> ended_;  // set as the thread ends
    std::future<void> ended_future_ = ended_.get_future();
};

template <class F>
auto Master::call(F command, Duration timeout) -> decltype(command(std::declval<Dispatcher&>())) {
    using R = decltype(command(std::declval<Dispatcher&>()));
    auto promise = std::make_shared<std::promise<R>>();
    auto future = promise->get_future();
    post([promise, command = std::move(command)](Dispatcher& d) mutable {
        try {
            if constexpr (std::is_void_v<R>) {
                command(d);
                promise->set_value();
            } else {
                promise->set_value(command(d));
            }
        } catch (...) {
            promise->set_exception(std::current_exception());
        }
    });
    if (future.wait_for(timeout) != std::future_status::ready)
        throw PpmpiError("the dispatcher did not answer within " +
                         std::to_string(timeout.count()) + " s");
    return future.get();
}

}  // namespace ppmpi
