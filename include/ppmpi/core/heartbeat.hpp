// ppmpi/core/heartbeat.hpp: when a silent worker counts as lost. Pure logic with the time passed in.
//
// Every message from a worker counts as a sign of life, and workers send a Heartbeat from their
// comm thread every heartbeat interval even while a job runs, so only a dead, frozen (SIGSTOP)
// or unreachable worker goes silent. The trade-off of the timeout: shorter finds a hung worker
// sooner, but a worker starved of CPU (or a slow network) for longer than it is declared lost
// and its jobs run again elsewhere.
#pragma once

#include <chrono>
#include <map>
#include <vector>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/core/scheduler.hpp"

namespace ppmpi {

class HeartbeatMonitor {
  public:
    // Starts watching `worker`: it is lost once silent for longer than `timeout`.
    void watch(WorkerId worker, Clock::duration timeout, Clock::time_point now);
    void heard(WorkerId worker, Clock::time_point now);
    void forget(WorkerId worker) { watched_.erase(worker); }
    bool watching(WorkerId worker) const { return watched_.count(worker) != 0; }
    // Workers silent for longer than their timeout at `now`.
    std::vector<WorkerId> silent(Clock::time_point now) const;

  private:
    struct Watch {
        Clock::duration timeout;
        Clock::time_point last_heard;
    };
    std::map<WorkerId, Watch> watched_;
};

// A process on this host, identified by pid and start time (so a reused pid is never mistaken
// for the worker). Used to notice a dead local worker at once and to kill a lost one.
struct ProcessIdentity {
    std::int64_t pid = 0;
    std::uint64_t start_ticks = 0;  // /proc/<pid>/stat field 22; 0 = unknown
    std::string host;
};

ProcessIdentity this_process();
std::string this_host_name();
// The CPUs this process may run on (its affinity mask; at least 1).
std::size_t usable_cores();
// False once the process has exited (or is a zombie, or its pid was reused).
bool process_alive(const ProcessIdentity& process);
// Whether the pid still exists on this host at all (a zombie counts: not yet reaped).
bool process_exists(const ProcessIdentity& process);
// SIGKILL, only if it is still that very process on this host. True if a signal was sent.
bool kill_process(const ProcessIdentity& process);

}  // namespace ppmpi
