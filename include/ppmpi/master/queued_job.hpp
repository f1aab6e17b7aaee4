// ppmpi/master/queued_job.hpp: what the dispatcher keeps of one unfinished job.
//
// The args stay here until the outcome is in, so the job can be sent again if its worker is
// lost. A worker runs its jobs in the order they were sent; the oldest one still there (its
// *head*) is the one running, so a job's time-out counts from when it became the head, and
// only the head is charged when its worker is lost (dispatcher.hpp).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

struct QueuedJob {
    std::string key;  // its function bundle
    Bytes args;
    Buffers arg_buffers;  // referenced, not copied: the Python objects stay alive with them
    Clock::duration timeout{};  // zero: no limit
    std::size_t nranks = 0;     // > 0: a parallel job of that many ranks (gangs.hpp)
    bool regrouped = false;     // workers were spawned together for it (Dispatcher::regroup_for)
    std::uint64_t send_order = 0;  // 0 until sent
    bool started = false;          // became its worker's head
    bool withdrawing = false;      // asked back from its worker (protocol step 4)
    Clock::time_point started_at{};
    Clock::time_point deadline = Clock::time_point::max();  // set when started
    std::vector<std::string> lost_on;  // workers lost while it ran on them
};

}  // namespace ppmpi
