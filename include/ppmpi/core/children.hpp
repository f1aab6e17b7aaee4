// ppmpi/core/children.hpp: nested jobs on the master's side (protocol step 8): which worker
// submitted each child job, for which of its jobs, and which worker waits to run it inline.
// Pure logic.
//
// Why this cannot deadlock: a job waits only for its own children (a worker refuses a foreign
// handle), and a child that has not started is run by the waiting job's own worker (Waiting),
// taken back first from behind another worker's job (protocol step 4). So every waiting job
// waits for a child that runs: on its own worker, inline, or on another one, whose own waits
// are resolved the same way; a tree finishes even on one worker. Children go ahead of top-level
// jobs in the queue, so that trees finish before new ones start.
#pragma once

#include "ppmpi/core/ids.hpp"
#include "ppmpi/core/protocol.hpp"

#include <optional>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace ppmpi {

class Children {
  public:
    struct Child {
        PeerId owner = 0;  // the worker that submitted it (its result goes there)
        JobId parent = 0;
        bool orphaned = false; // the owner was lost: its outcome goes nowhere
    };

    void add(JobId child, PeerId owner, JobId parent);
    const Child* find(JobId child) const;
    // Its owner was lost: its children are orphaned (returned; their results are dropped).
    std::vector<JobId> orphan(PeerId owner);
    void erase(JobId child);
    // `helper` waits for the child, which comes back from another worker first (Withdraw).
    void want_help(JobId child, PeerId helper) { helpers_[child] = helper; }
    std::optional<PeerId> take_helper(JobId child);
    std::size_t size() const { return children_.size(); }

  private:
    std::unordered_map<JobId, Child> children_;
    std::unordered_map<PeerId, std::unordered_set<JobId>> by_owner_;
    std::unordered_map<JobId, PeerId> helpers_;
};

} // namespace ppmpi
