// ppmpi/worker/worker.hpp: a worker process (ranks 1..N), seen from its two threads.
//
//  - The comm thread owns the transport (and so MPI: it initialises and finalises it). It
//    answers the master (protocol.hpp), queues tasks for the job thread, sends results and
//    heartbeats, and watches the master: one silent for master_timeout, or whose process is
//    gone (same host), ends the worker. A long job does not make the worker look dead.
//  - The job thread calls serve() (the main thread, which holds the Python interpreter)
//    and runs configure/define/run in arrival order. Between two jobs it borrows the comm loop
//    (baton.hpp) for a short window: results leave, tasks reach it with no thread hand-off.
#pragma once

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <unordered_set>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/core/baton.hpp"
#include "ppmpi/core/process.hpp"
#include "ppmpi/transport/transport.hpp"
#include "ppmpi/worker/job_runner.hpp"

namespace ppmpi {

constexpr int kStuckStartStatus = 4; // the process status of a worker whose MPI never started

struct WorkerEnvironment {
    std::shared_ptr<void> session;  // destroyed last, on the comm thread (MPI_Finalize)
    std::unique_ptr<Transport> transport;
    PeerId master = 0;
    // In the master's MPI world, or spawned together with others: after Goodbye, wait for
    // Release before finalizing (protocol step 7).
    bool awaits_release = false;
    bool borrowable = true;  // the transport may be driven by any thread, one at a time
    std::shared_ptr<GangComms> gangs;  // where parallel jobs can run (else ppmpi.comm() fails)
    // Called before the session closes, with whether the master let us go in order (for MPI:
    // disconnect from the parent). Without a clean end the session must not finalize either.
    std::function<void(bool clean)> before_close;
};

using WorkerEnvironmentFactory = std::function<WorkerEnvironment()>;

struct WorkerOptions {
    std::chrono::milliseconds first_contact_timeout{120000};  // until the master's first word
    // (and until MPI has started: past it, a worker stuck in MPI_Init exits kStuckStartStatus)
    std::chrono::milliseconds exit_grace{2000};  // a job still running at the end gets this long
};

class WorkerHost : public JobHost {
  public:
    WorkerHost(WorkerEnvironmentFactory factory, WorkerOptions options = {});
    // Nested jobs (nested_jobs.cpp), from the job thread.
    JobId submit_child(JobId parent, const std::string& key, Bytes bundle, Bytes args,
                       Buffers buffers, double timeout) override;
    std::optional<Message> wait_child(JobId child, double timeout) override;

    // Serves the master until it lets this worker go or is gone. Runs jobs on the calling
    // thread. Returns the process exit status (0 after an orderly shutdown).
    int serve(JobRunner& runner);

  private:
    // What one turn of the comm thread found: whether anything moved, whether to end (and
    // whether the master let this worker go in order).
    struct Verdict {
        bool active = false;
        std::optional<bool> end;
    };

    void comm_main();
    bool serve_master(Transport& transport, PeerId master);
    void close(WorkerEnvironment& env, bool clean);
    Verdict owner_turn(Transport& transport, PeerId master);
    bool comm_turn(Transport& transport, PeerId master, Clock::time_point now);
    bool send_outbox(Transport& transport, PeerId master, Clock::time_point now);
    bool receive(Transport& transport, PeerId master, Clock::time_point now);
    std::optional<Message> next_work();
    void exit_if_start_is_stuck();
    void drive_while_idle();
    bool job_thread_quiet();
    bool spin_worthwhile() const;
    bool nothing_in_flight(Transport& transport) const;
    bool send_result_here();
    bool idle_wait(Transport& transport, PeerId master, std::chrono::microseconds delay);
    bool only_urgent_while_job_runs();
    bool widen_comm_doze();
    void on_message(Message& message);
    void withdraw(JobId job);
    bool master_alive(Clock::time_point now);
    void job_loop(JobRunner& runner);
    void run_task(JobRunner& runner, const Task& task, Message& item);
    void run_inline(Message& item);
    std::optional<Message> take_child(JobId child);
    void post_request(Message request);
    void wait_for_result_sends();
    void stop_job_thread();

    WorkerEnvironmentFactory factory_;
    WorkerOptions options_;

    // whoever holds the baton (the comm thread, or the job thread between jobs)
    Welcome welcome_;
    bool welcomed_ = false, shutdown_ = false, released_ = false, awaits_release_ = false;
    bool leave_now_ = false;  // Shutdown{immediate} or Release{finalize=false}
    Clock::time_point last_from_master_{}, next_heartbeat_{}, next_master_check_{};
    ProcessState master_state_ = ProcessState::Running;  // at the last check (this host)
    std::unique_ptr<ProcessWatch> master_exit_;  // tells when a master on this host exits
    std::uint64_t jobs_done_ = 0;
    std::vector<Message> outbox_;

    // job thread only
    std::vector<std::weak_ptr<void>> results_in_flight_;  // the last result's buffers, in sending
    std::optional<Gang> next_gang_;  // of the parallel job whose Task comes next

    // shared between the threads
    std::mutex mutex_;
    std::condition_variable work_ready_;
    std::deque<Message> work_;
    std::deque<Message> results_;
    std::deque<Message> requests_;  // nested jobs' FunctionDef, Submit, Waiting (step 8)
    std::unordered_map<JobId, Message> child_results_;
    std::unordered_set<JobId> children_, asked_;  // submitted here; waited for (Waiting sent)
    std::unordered_set<std::string> keys_sent_;  // functions the master has from us
    std::uint64_t children_made_ = 0;
    JobRunner* runner_ = nullptr;           // set by serve()
    Clock::time_point job_started_{};       // of the job running (if job_thread_busy_)
    bool job_thread_waiting_ = false;       // the job thread sleeps until work comes
    std::atomic<bool> work_posted_{false};  // work_ came in a turn: wake the job thread after it
    std::atomic<bool> job_thread_stop_{false}, job_thread_failed_{false};
    std::atomic<bool> job_thread_busy_{false};
    std::atomic<bool> in_parallel_job_{false};  // its job holds a communicator (job_thread.cpp)
    std::atomic<bool> comm_dozing_{false};  // the comm thread sleeps on doorbells (idle_wait)
    std::atomic<bool> comm_only_urgent_{false};  // ... and only urgent frames wake it
    std::atomic<double> last_job_seconds_{0.0};  // how long the last job ran
    std::atomic<int> exit_status_{0};
    Wakeup comm_wakeup_;
    Baton baton_{comm_wakeup_};
    std::atomic<Transport*> transport_{nullptr};  // set once the session is up, for borrowers
    Clock::time_point serve_started_{};
    std::atomic<bool> mpi_started_{false}; // the environment (MPI) came up; never reset
    PeerId master_ = 0;                            // written before transport_
    bool borrowable_ = false;                      // written before transport_
    std::shared_ptr<GangComms> gang_comms_;        // written before transport_
};

}  // namespace ppmpi
