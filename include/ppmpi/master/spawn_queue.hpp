// ppmpi/master/spawn_queue.hpp: worker launches that can never freeze the master.
//
// Open MPI 4.1.4's MPI_Comm_spawn can block for good (the new process stuck in PMIx_Init, the
// parent in PMIx_Lookup; openpmix#2735, measured: ~1 spawn in 185 under mpirun). So each launch
// attempt runs on a thread of its own and its owner only polls:
//  1. request(peer) queues a launch; launches start one at a time, in request order.
//  2. An attempt that has not returned within its bound (first_bound, doubling per attempt) is
//     abandoned: nothing waits for it again, its thread is left to return or not, a warning is
//     logged, and a fresh attempt for the same peer starts at once (it shares nothing with the
//     stuck one but the runtime). After max_attempts abandoned or failed attempts, the peer's
//     launch fails.
//  3. The first attempt of a peer to succeed (abandoned or not) gives the peer its process
//     (Started). One that succeeds after that, or after cancel(peer), is a Surplus: a working
//     process nobody asked for, which the owner lets go.
// An attempt that throws is retried the same way (at once), then Failed with its error.
// No MPI here: the launch is a function (MpiLauncher's spawns an ppmpi-worker; tests pass fakes).
#pragma once

#include "ppmpi/transport/transport.hpp"

#include <any>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace ppmpi {

class SpawnQueue {
  public:
    using Clock = std::chrono::steady_clock;
    // What a launch produced (for MPI: the new intercommunicator).
    using Handle = std::any;
    // Blocks for one launch and returns its handle, or throws naming what failed. Runs on the
    // attempt's own thread (or the owner's, if !threaded). `attempt` names the attempt
    // uniquely; the launched process gets it (its watchdog knows from it that it was spawned).
    using LaunchFn = std::function<Handle(const std::string& attempt)>;

    struct Options {
        std::chrono::milliseconds first_bound{3000}; // a spawn takes ~0.25 s here
        int max_attempts = 3;                        // 3 + 6 + 12 s: failed after 21 s
        // false: the launch runs inside poll() on the owner's thread and is never abandoned
        // (an MPI without MPI_THREAD_MULTIPLE cannot call MPI from a second thread).
        bool threaded = true;
    };

    struct Event {
        enum class Kind { Started, Failed, Surplus };
        Kind kind = Kind::Started;
        PeerId peer = -1;  // whose launch it was
        Handle handle;     // Started and Surplus
        std::string error; // Failed
    };

    SpawnQueue(LaunchFn launch, Options options);
    ~SpawnQueue(); // never joins: an abandoned attempt may never return

    SpawnQueue(const SpawnQueue&) = delete;
    SpawnQueue& operator=(const SpawnQueue&) = delete;

    void request(PeerId peer);
    // The peer is not wanted any more (declared lost, or its pool went): its queued launch is
    // dropped, and an attempt of it that still succeeds is a Surplus.
    void cancel(PeerId peer);
    // Returns what happened since the last call, and starts the next attempt if none runs.
    std::vector<Event> poll(Clock::time_point now);

    bool busy() const { return live_ != nullptr || !queue_.empty(); }
    // Abandoned attempts whose thread has not returned (MPI_Finalize would wait for them).
    std::size_t stuck() const;
    std::uint64_t abandoned_total() const { return abandoned_total_; }

  private:
    struct Attempt; // shared with the attempt's thread
    struct Wanted { // a peer whose launch is queued or running
        int attempts = 0;
        std::string last_error;
    };

    void start_next(Clock::time_point now);
    void run(const std::shared_ptr<Attempt>& attempt);
    void settle(const std::shared_ptr<Attempt>& attempt, bool was_live, std::vector<Event>& events);
    void give_up_or_retry(PeerId peer, const std::string& why, std::vector<Event>& events);

    LaunchFn launch_;
    Options options_;
    std::deque<PeerId> queue_;        // waiting for their (next) attempt
    std::map<PeerId, Wanted> wanted_; // queued or running, not yet Started
    std::shared_ptr<Attempt> live_;   // the one attempt not abandoned, if any
    std::vector<std::shared_ptr<Attempt>> abandoned_;
    std::uint64_t next_attempt_ = 1, abandoned_total_ = 0;
    std::string tag_; // makes attempt names unique across processes
};

} // namespace ppmpi
