// ppmpi/core/gangs.hpp: parallel jobs (nranks = k), each run by k workers at once that share an
// MPI communicator made for it. Pure logic beside the Scheduler: no MPI, no clock.
//
// Workers can make a communicator together only within one MPI world: the ranks of an mpirun
// world, or the workers spawned together by one MPI_Comm_spawn (a *domain*, launcher.hpp).
//  1. Parallel jobs wait in FIFO order. The oldest gets the one reservation: k workers of one
//     domain, the least loaded (then the lowest ranks). The Scheduler holds them: they finish
//     the jobs they have and get no new ones, while single jobs go on filling the others.
//  2. Once all k are idle, the job starts on them (a Gang header and the Task to each; rank i
//     of the job's communicator is the i-th member) and the next parallel job is reserved for.
//  3. Every member's Result is kept; the job ends once all k are in: Ok if all are Ok.
//  4. (Dispatcher) a member's error: the others get kAbortGrace to answer (one waiting in a
//     collective for the failed rank never would); a member lost, or the job's timeout or
//     cancel: the whole gang is stopped, so that its replacements, spawned together, make a
//     domain of k again. A job whose member was lost runs again.
#pragma once

#include "ppmpi/core/ids.hpp"
#include "ppmpi/core/protocol.hpp"

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace ppmpi {

inline constexpr auto kAbortGrace = std::chrono::seconds(2);

// What one rank of a parallel job answered.
struct GangPart {
    ResultStatus status = ResultStatus::Ok;
    Bytes payload;
    Buffers buffers = {};
    double seconds = 0.0;
};

// The k outcomes in one payload for Python (ppmpi/_gang.py reads it): "PPG1", u32 k, then per
// rank u8 state (0 ok, 1 error, 2 no answer: stopped), u64 payload length, u32 buffer count,
// the payload; the buffers follow the payload's in rank order. Little-endian.
Bytes pack_gang_parts(std::vector<std::optional<GangPart>>& parts, Buffers& buffers);

class Gangs {
  public:
    using Load = std::function<std::size_t(PeerId)>;
    struct Start {
        JobId job;
        std::vector<PeerId> members;   // in rank order
        std::vector<int> domain_ranks; // theirs in their domain's world, likewise
    };

    struct Removal {
        std::optional<JobId> broken;  // the running job it was a member of: its gang is broken
        std::vector<PeerId> unhold;   // the rest of a reservation it was in (to release)
    };

    void add_worker(PeerId worker, int domain, int rank);
    Removal remove_worker(PeerId worker);

    void enqueue(JobId job, std::size_t nranks);
    void requeue(JobId job, std::size_t nranks); // at the front
    // A waiting (or reserved for) job leaves; the reserved workers to release.
    std::vector<PeerId> drop(JobId job);
    bool waiting(JobId job) const { return nranks_.count(job) != 0 && !runs_.count(job); }

    // Step 1: the workers newly reserved (to hold), if the oldest job got its reservation.
    std::vector<PeerId> reserve(const Load& load);
    // Step 2: the reserved job, if all its workers are idle now.
    std::optional<Start> start_ready(const Load& load);

    // Step 3: a member's answer; true once the job has all k.
    bool record(JobId job, PeerId worker, GangPart part);
    bool running(JobId job) const { return runs_.count(job) != 0; }
    bool member(JobId job, PeerId worker) const;
    bool any_error(JobId job) const;
    // The job ends: its members (in rank order) and what each answered.
    std::pair<std::vector<PeerId>, std::vector<std::optional<GangPart>>> end(JobId job);
    std::vector<JobId> running_jobs() const;

    std::size_t pending() const { return queue_.size() + (reserved_ ? 1 : 0); } // not started
    std::size_t active() const { return runs_.size(); }
    // The oldest waiting job and its size, if the largest domain cannot hold it.
    std::optional<std::pair<JobId, std::size_t>> unplaceable() const;
    std::string describe_domains() const; // "4 (the mpirun world), 2" etc., for errors
    // `count` workers to let go so that as many spawned together make a big enough domain:
    // of the smallest domains first, then the least loaded; none of a running job's.
    std::vector<PeerId> to_regroup(std::size_t count, const Load& load) const;

  private:
    struct Member {
        int domain = -1;
        int rank = 0;
        std::optional<JobId> job; // reserved or running for
    };
    struct Run {
        std::vector<PeerId> members;
        std::vector<std::optional<GangPart>> parts;
        std::size_t answered = 0;
    };
    std::vector<PeerId> pick(std::size_t nranks, const Load& load) const;

    std::unordered_map<PeerId, Member> workers_;
    std::map<int, std::size_t> domain_sizes_;
    std::deque<JobId> queue_;
    std::unordered_map<JobId, std::size_t> nranks_; // waiting or running
    std::optional<JobId> reserved_;
    std::vector<PeerId> reservation_;
    std::unordered_map<JobId, Run> runs_;
    bool dirty_ = false; // something changed since reserve() last looked
};

} // namespace ppmpi
