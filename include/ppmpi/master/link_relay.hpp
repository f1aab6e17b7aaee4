// ppmpi/master/link_relay.hpp: a ppmpi-server's side of its clients' links (link_stream.hpp),
// inside its dispatcher: each client's tasks go straight into the server's pool and each
// outcome straight back, on the dispatcher's thread (no thread hand-off, nothing unpickled).
//
// Each authenticated client is a session with one slot per worker of the pool (step 2); the
// slot answers protocol.hpp as a worker would (steps 3-4). A session ends when its client says
// Bye, breaks the link or stays silent for kSilenceLimit; its jobs are then cancelled (their
// workers stopped and replaced). What happened is kept as lines for the server's log.
#pragma once

#include <map>
#include <memory>
#include <set>
#include <optional>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "ppmpi/core/job_table.hpp"
#include "ppmpi/link/link_stream.hpp"
#include "ppmpi/master/pool_types.hpp"

namespace ppmpi {

class Dispatcher;

class LinkRelay {
  public:
    // `limit`: every job's time limit on this server (ppmpi-server -k; zero: none).
    LinkRelay(Dispatcher& dispatcher, PoolId pool, Clock::duration limit);
    ~LinkRelay();

    // Takes an authenticated connection (the socket and its session keys) from `where`.
    void serve(int fd, const link::SessionKeys& keys, std::string where);
    // Reads, runs and answers what came; true if anything moved.
    bool step(Clock::time_point now);
    // A job of the pool ended: sends its outcome to its client. Always consumes it (every job
    // of a relayed pool is a client's).
    void on_end(JobId job, JobOutcome& outcome);
    // The sockets to doze on; false if something waits to be sent (no doze then).
    bool plan(std::vector<int>& fds) const;
    bool transferring() const;
    // When a client last sent what a spin pays for: anything, from a client on another host;
    // a job it waits for alone (Task::awaited), from one on this host, which shares our cores
    // (link/peer_host.hpp).
    Clock::time_point last_spin_cue() const { return last_spin_cue_; }
    std::size_t jobs() const { return jobs_.size(); }  // relayed, not ended yet
    std::size_t sessions() const { return sessions_.size(); }
    std::vector<std::string> take_events() { return std::exchange(events_, {}); }

  private:
    struct Session {
        std::unique_ptr<link::LinkStream> stream;
        std::string where;
        std::set<std::uint32_t> slots;  // live
        std::uint32_t next_slot = 0;
        std::unordered_map<std::string, Bytes> bundles;  // FunctionDefs, by key
        std::unordered_map<JobId, JobId> jobs;           // client job -> job here
        Clock::time_point next_beat{};
        bool on_this_host = false;  // its client
        bool ended = false;
    };
    struct Relayed {
        int session;
        std::uint32_t slot;
        JobId client_job;
    };
    void receive(int id, Session& session);
    void on_slot(int id, Session& session, link::LinkMessage& message);
    void on_message(int id, Session& session, std::uint32_t slot, Message& message);
    void on_task(int id, Session& session, std::uint32_t slot, Message& message);
    void on_withdraw(Session& session, std::uint32_t slot, JobId job);
    void on_shutdown(Session& session, std::uint32_t slot, bool immediate);
    std::size_t cancel_jobs(Session& session, std::optional<std::uint32_t> slot);
    void offer_slot(Session& session);
    void send(Session& session, std::uint32_t slot, std::vector<Message> messages);
    void beat(Session& session, Clock::time_point now);
    void end(Session& session, const std::string& reason);

    Dispatcher& dispatcher_;
    PoolId pool_;
    Clock::duration limit_;
    std::map<int, Session> sessions_;
    int next_session_ = 0;
    std::unordered_map<JobId, Relayed> jobs_;
    JobId next_job_ = JobId{1} << 62;  // apart from the ids Python gives its own jobs
    std::vector<std::string> events_;
    Clock::time_point now_{};  // of this step
    Clock::time_point last_spin_cue_ = Clock::time_point::min();  // none yet
    std::string host_;
};

}  // namespace ppmpi
