// ppmpi/core/job_table.hpp: the jobs of one server, as Python threads see them.
//
// Shared by the Python threads (submit, wait, take the result) and the dispatcher thread
// (finish). Every wait takes a timeout: the Python layer waits in short slices so that Ctrl-C
// is seen, and the dispatcher never waits here at all.
//
// A job is *done* when its outcome is in; it is *finished* (counted by wait_group) when it is
// done and, if it asked for notification (a pp callback), once Python says the callback ran.
// take() moves the outcome out and forgets the job, so results are freed once taken.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ppmpi/core/outcomes.hpp"
#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

struct JobOutcome {
    Outcome outcome = Outcome::Ok;
    Bytes payload;
    std::string message;  // for outcomes made on the master
    std::string worker;   // "host:rank" that ran the job, if any
    double seconds = 0.0;
    Buffers buffers = {};  // the payload's out-of-band buffers
};

class JobTable {
  public:
    using Duration = std::chrono::duration<double>;

    JobId create(JobId id, int group, bool notify);
    // Records the outcome; false if the job is unknown or already done (a late duplicate).
    bool finish(JobId id, JobOutcome outcome);
    // Fails every job not yet done with the same outcome (destroy). Returns how many.
    std::size_t fail_unfinished(Outcome outcome, const std::string& message);

    bool is_done(JobId id) const;
    // Waits up to `timeout` for the job to be done; true if it is. Throws UnknownJobError.
    bool wait(JobId id, Duration timeout) const;
    // Moves the outcome out and forgets the job (a job with notify=true: at mark_notified, so
    // it counts as unfinished until its callback ran). Throws UnknownJobError; nullopt if not
    // done.
    std::optional<JobOutcome> take(JobId id);
    // Nobody will take this job's result (its Python object was freed): drop it once it is
    // finished; until then it still counts for wait_group.
    void forget(JobId id);

    // Jobs with notify=true, as they become done; waits up to `timeout` for the first.
    std::vector<JobId> next_notifications(Duration timeout);
    // Python ran the job's callback: the job now counts as finished for wait_group.
    void mark_notified(JobId id);
    // Also report this job through next_notifications once it is done (a Python future
    // wants it), without making it wait for mark_notified to count as finished. False if the
    // job is unknown (its result was already taken).
    bool watch(JobId id);

    // Waits until no job of `group` (or of any group when group < 0) is unfinished.
    bool wait_group(int group, Duration timeout) const;
    std::size_t unfinished(int group = -1) const;
    // Wakes every waiter (used at destroy so no thread sleeps out its timeout).
    void wake_all();

  private:
    struct Record {
        int group = 0;
        bool notify = false;
        bool watch = false;
        bool done = false;
        bool finished = false;
        bool discard = false;  // nobody will take the outcome: drop it once finished
        JobOutcome outcome;
    };
    void mark_finished_locked(Record& record);

    mutable std::mutex mutex_;
    mutable std::condition_variable changed_;
    std::unordered_map<JobId, Record> jobs_;
    std::unordered_map<int, std::size_t> unfinished_by_group_;
    std::size_t unfinished_total_ = 0;
    std::deque<JobId> notifications_;
};

}  // namespace ppmpi
