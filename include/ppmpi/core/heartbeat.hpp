// ppmpi/core/heartbeat.hpp: which workers have been silent too long. Pure logic, time passed in.
//
// Every message from a worker counts as a sign of life, and workers send a Heartbeat from their
// comm thread every heartbeat interval even while a job runs, so only a dead, frozen (SIGSTOP),
// starved or unreachable worker goes silent. What silence means is the dispatcher's call
// (dispatcher_faults.cpp): a worker of the master's host is judged by its process, one elsewhere
// by its silence. The trade-off of the timeout: shorter finds a hung worker sooner, but a worker
// starved of CPU (or behind a slow network) for longer than it is suspected.
#pragma once

#include <chrono>
#include <unordered_map>
#include <vector>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/core/ids.hpp"

namespace ppmpi {

class HeartbeatMonitor {
  public:
    struct Silence {
        PeerId worker;
        Clock::duration silent_for;
        Clock::duration timeout;
    };

    // Starts watching `worker`: it is silent once not heard from for longer than `timeout`.
    void watch(PeerId worker, Clock::duration timeout, Clock::time_point now);
    void heard(PeerId worker, Clock::time_point now);
    void forget(PeerId worker) { watched_.erase(worker); }
    bool watching(PeerId worker) const { return watched_.count(worker) != 0; }
    // Workers silent for longer than their timeout at `now`, unless postponed past `now`. One
    // pass over the watched workers: the caller asks every ~100 ms, not every turn.
    std::vector<Silence> silent(Clock::time_point now) const;
    // Not reported as silent again before `until` unless heard from meanwhile (the silence
    // goes on counting).
    void postpone(PeerId worker, Clock::time_point until);

  private:
    struct Watch {
        Clock::duration timeout;
        Clock::time_point last_heard;
        Clock::time_point postponed_until{};
    };
    std::unordered_map<PeerId, Watch> watched_;
};

}  // namespace ppmpi
