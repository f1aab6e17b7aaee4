// ppmpi/core/process.hpp: processes of this host: who we are, whether a worker's process still
// runs, is stopped or is gone, and killing one safely.
//
// A process is identified by pid and start time (so a reused pid is never mistaken for the
// worker). Processes on another host, and this very process (in tests, workers are threads of
// it), cannot be judged from here: the checks answer "alive" and never kill them.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <string>
#include <unordered_map>
#include <vector>

namespace ppmpi {

struct ProcessIdentity {
    std::int64_t pid = 0;
    std::uint64_t start_ticks = 0;  // /proc/<pid>/stat field 22; 0 = unknown
    std::string host;
};

ProcessIdentity this_process();
std::string this_host_name();
// The CPUs this process may run on (its affinity mask; at least 1).
std::size_t usable_cores();
// Whether fewer threads are runnable on this host right now than this process has cores
// (/proc/loadavg, read at most every millisecond). Polling without sleeping (spinning) for a
// reply only pays then: on a host with more runnable threads than cores, a spinning thread
// takes its core from one that has work (measured: 16 workers on 2 cores each spun ~250 us
// per 100 ms job, on both of their threads).
bool core_to_spare();
// Whether the process is one this host can judge: on this host, known pid, not this process.
bool judged_here(const ProcessIdentity& process);
// False once the process has exited (or is a zombie, or its pid was reused).
bool process_alive(const ProcessIdentity& process);
// Whether the pid still exists on this host at all (a zombie counts: not yet reaped).
bool process_exists(const ProcessIdentity& process);
// SIGKILL, only if it is still that very process on this host. True if a signal was sent.
bool kill_process(const ProcessIdentity& process);
// Waits until none of `processes` exists any more (reaped), at most `patience`; SIGKILLs those
// left and waits for them as long again. Returns how many were killed.
std::size_t end_processes(const std::vector<ProcessIdentity>& processes,
                          std::chrono::milliseconds patience);

// A silent peer whose process runs on this host is starved of CPU, not dead: master and
// workers give it this many of their timeouts before they take it as hung in a way no process
// state shows (an overloaded host delays heartbeats; losing peers for it only adds load).
inline constexpr int kStarvedTimeouts = 10;
enum class ProcessState { Running, Stopped, Gone };  // Running: R, S or D (waiting for a core,
                                                      // sleeping, or in the kernel)
// Stopped: SIGSTOP or a debugger. A process that cannot be judged here counts as Running.
ProcessState process_state(const ProcessIdentity& process);

// Tells when watched processes exit, in bulk: one pidfd per process in one epoll set, so a check
// costs the same with 10 processes as with 10,000 (reading /proc for each of them every 100 ms
// took a whole core at 10,000, bench/sim). Where pidfds are not available (Linux < 5.3, seccomp),
// each check reads /proc for a slice of them in turn.
class ProcessWatch {
  public:
    using Key = std::int64_t;
    ProcessWatch();
    ~ProcessWatch();
    ProcessWatch(const ProcessWatch&) = delete;
    ProcessWatch& operator=(const ProcessWatch&) = delete;

    // Starts watching a process that judged_here(); others are ignored.
    void watch(Key key, const ProcessIdentity& process);
    void forget(Key key);
    // The keys whose process exited since the last call (each reported once, then forgotten).
    std::vector<Key> exited();
    std::size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        ProcessIdentity process;
        int pidfd = -1;
    };
    std::vector<Key> exited_by_proc();

    int epoll_ = -1;
    std::unordered_map<Key, Entry> entries_;
    std::vector<Key> gone_at_watch_;  // already gone when watched
    std::vector<Key> rotation_;       // without pidfds: checked a slice at a time
    std::size_t next_ = 0;
};

}  // namespace ppmpi
