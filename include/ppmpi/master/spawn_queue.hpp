// ppmpi/master/spawn_queue.hpp: worker launches that can never freeze the master.
//
// A launch starts a batch of worker processes together (MPI_Comm_spawn of several: they start
// in parallel, where one spawn per worker, one after another, took 10.9 s to start 32 workers
// on 2 cores). Open MPI 4.1.4's MPI_Comm_spawn can block for good (the new process stuck in
// PMIx_Init, the parent in PMIx_Lookup; openpmix#2735, measured: ~1 spawn in 185 under
// mpirun). So each launch attempt runs on a thread of its own and its owner only polls:
//  1. request(peers) queues a launch of one process per peer; launches start one at a time, in
//     request order.
//  2. An attempt that has not returned within its bound (first_bound, plus per_process for each
//     process after the first, doubling per attempt) is abandoned: nothing waits for it again, its
//     thread is left to return or not, a warning is logged, and a fresh attempt of the same
//     launch starts at once (it shares nothing with the stuck one but the runtime). After
//     max_attempts abandoned or failed attempts, the launch fails.
//  3. The first attempt of a launch to succeed (abandoned or not) gives its peers their
//     processes (Started; the peers cancelled meanwhile are listed as unwanted). One that
//     succeeds after that is a Surplus: working processes nobody asked for, which the owner
//     lets go.
// An attempt that throws is retried the same way (at once), then Failed with its error.
// No MPI here: the launch is a function (MpiLauncher's spawns python3 or ppmpi-worker; tests
// pass fakes).
#pragma once

#include "ppmpi/transport/transport.hpp"

#include <any>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

namespace ppmpi {

class SpawnQueue {
  public:
    using Clock = std::chrono::steady_clock;
    // What a launch produced (for MPI: the new intercommunicator).
    using Handle = std::any;
    // Blocks for one launch of `count` processes and returns its handle, or throws naming what
    // failed. Runs on the attempt's own thread (or the owner's, if !threaded). `attempt` names
    // the attempt uniquely; the launched processes get it (their watchdog knows from it that
    // they were spawned).
    using LaunchFn = std::function<Handle(const std::string& attempt, std::size_t count)>;

    struct Options {
        std::chrono::milliseconds first_bound{3000};  // a spawn of one takes ~0.25 s here
        std::chrono::milliseconds per_process{500};   // ... and each more its start-up CPU
        int max_attempts = 3;                         // 3 + 6 + 12 s: failed after 21 s
        // false: the launch runs inside poll() on the owner's thread and is never abandoned
        // (an MPI without MPI_THREAD_MULTIPLE cannot call MPI from a second thread).
        bool threaded = true;
    };

    struct Event {
        enum class Kind { Started, Failed, Surplus };
        Kind kind = Kind::Started;
        std::vector<PeerId> peers;     // whose launch it was (Surplus: none)
        std::vector<PeerId> unwanted;  // Started: those of `peers` cancelled meanwhile
        std::size_t processes = 0;     // how many the launch started (Started, Surplus)
        Handle handle;                 // Started and Surplus
        std::string error;             // Failed
    };

    SpawnQueue(LaunchFn launch, Options options);
    ~SpawnQueue(); // never joins: an abandoned attempt may never return

    SpawnQueue(const SpawnQueue&) = delete;
    SpawnQueue& operator=(const SpawnQueue&) = delete;

    void request(std::vector<PeerId> peers);
    void request(PeerId peer) { request(std::vector<PeerId>{peer}); }
    // The peer is not wanted any more (declared lost, or its pool went): a queued launch whose
    // every peer is unwanted is dropped; one that starts anyway lists it as unwanted.
    void cancel(PeerId peer);
    // Returns what happened since the last call, and starts the next attempt if none runs.
    std::vector<Event> poll(Clock::time_point now);

    bool busy() const { return live_ != nullptr || !queue_.empty(); }
    // Abandoned attempts whose thread has not returned (MPI_Finalize would wait for them).
    std::size_t stuck() const;
    std::uint64_t abandoned_total() const { return abandoned_total_; }

  private:
    struct Attempt; // shared with the attempt's thread
    struct Launch {  // queued or running, not yet Started
        std::uint64_t id = 0;
        std::vector<PeerId> peers;
        int attempts = 0;
    };

    void start_next(Clock::time_point now);
    void run(const std::shared_ptr<Attempt>& attempt);
    void settle(const std::shared_ptr<Attempt>& attempt, bool was_live, std::vector<Event>& events);
    void give_up_or_retry(std::uint64_t launch, const std::string& why, std::vector<Event>& events);
    Clock::duration bound(const Launch& launch) const;
    bool wanted(const Launch& launch) const;

    LaunchFn launch_;
    Options options_;
    std::deque<std::uint64_t> queue_;          // launches waiting for their (next) attempt
    std::map<std::uint64_t, Launch> launches_;  // queued or running, not yet Started
    std::set<PeerId> unwanted_;                 // cancelled peers of those launches
    std::shared_ptr<Attempt> live_;             // the one attempt not abandoned, if any
    std::vector<std::shared_ptr<Attempt>> abandoned_;
    std::uint64_t next_launch_ = 1, next_attempt_ = 1, abandoned_total_ = 0;
    std::string tag_; // makes attempt names unique across processes
};

} // namespace ppmpi
