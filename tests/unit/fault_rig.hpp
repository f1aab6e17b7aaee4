// The rig of the dispatcher fault tests: dispatcher_test.cpp's Cluster with a clock the test
// moves. step() gets now() = the real time plus an offset that jump() grows, so a
// worker_timeout or a job timeout passes without sleeping. Worker threads keep real time
// (heartbeats every 50 ms). Workers can also be Puppets, played by the test with raw frames.
#pragma once

#include <catch2/catch.hpp>

#include <algorithm>
#include <optional>

#include "fake_launcher.hpp"
#include "ppmpi/core/heartbeat.hpp"

namespace ppmpi_test {

// Cut-off workers end on the master time-out, so keep it short (the live ones hear the
// master's heartbeats, sent at least every 50 ms of real time while the test steps).
inline DispatcherOptions fault_options() {
    DispatcherOptions o = test_dispatcher_options();
    o.master_timeout = 1s;
    return o;
}

// A worker the test plays by hand (ThreadLauncher::puppets or ::world).
class Puppet {
  public:
    Puppet(const std::shared_ptr<LoopbackHub>& hub, PeerId peer)
        : peer(peer), transport_(hub->endpoint(peer)) {}
    void send(std::vector<Message> messages) { transport_->post(0, encode_frame(messages)); }
    void hello() { hello_from(this_process().host); }
    // As a process on `host` (a world rank on another host: never killed, never probed).
    void hello_from(const std::string& host) {
        ProcessIdentity self = this_process();  // never killed: kill_process spares us
        send({{Hello{self.pid, self.start_ticks, host}, {}}});
    }
    // Takes in what arrived; returns how many messages (Heartbeats included) that was.
    std::size_t poll() {
        std::size_t n = 0;
        while (auto envelope = transport_->poll()) {
            REQUIRE(envelope->peer == 0);
            for (Message& m : decode_frame(envelope->frame)) {
                inbox.push_back(std::move(m));
                ++n;
            }
        }
        return n;
    }
    // The first message of `kind` taken in so far (removed from the inbox).
    std::optional<Message> take(Kind kind) {
        poll();
        for (auto it = inbox.begin(); it != inbox.end(); ++it) {
            if (kind_of(it->header) != kind) continue;
            Message m = std::move(*it);
            inbox.erase(it);
            return m;
        }
        return std::nullopt;
    }
    std::vector<Message> inbox;
    const PeerId peer;

  private:
    std::unique_ptr<Transport> transport_;
};

struct FaultCluster {
    std::shared_ptr<LoopbackHub> hub = LoopbackHub::create();
    std::unique_ptr<Transport> master = hub->endpoint(0);
    std::shared_ptr<WorkerThreads> workers = std::make_shared<WorkerThreads>(hub);
    ThreadLauncher launcher{workers};
    Dispatcher dispatcher;
    std::shared_ptr<JobTable> jobs = std::make_shared<JobTable>();
    Clock::duration offset{};
    Clock::duration final_grace = 5s;  // for the shutdown at the end of the test

    // `world_ranks` puppet ranks are static peers 1..n. `prime`: one step before anything
    // else (false for the regression test on spawning before the first step).
    explicit FaultCluster(DispatcherOptions options = fault_options(), std::size_t world_ranks = 0,
                          bool prime = true)
        : dispatcher(*master, with_world(launcher, *workers, world_ranks), std::move(options)) {
        if (prime) step();
    }
    ~FaultCluster() {
        workers->log->open_gate();
        dispatcher.shutdown(final_grace);
        workers->join_all();
    }

    Clock::time_point now() const { return Clock::now() + offset; }
    void jump(Clock::duration d) { offset += d; }
    bool step() { return dispatcher.step(now()); }

    template <class Pred> bool run_until(Pred done, Clock::duration limit = 10s) {
        auto deadline = Clock::now() + limit;
        while (!done()) {
            if (Clock::now() > deadline) return false;
            if (!step()) std::this_thread::sleep_for(100us);
        }
        return true;
    }
    void run_for(Clock::duration real) {
        run_until([] { return false; }, real);
    }

    PoolId pool(std::size_t ncpus, std::size_t slots = 1,
                std::chrono::milliseconds worker_timeout = 2s, std::size_t max_retries = 3) {
        PoolSpec spec;
        spec.deep_queue = 0;  // pipelining with short queues too (see the deep-queue test)
        spec.ncpus = ncpus;
        spec.slots_per_worker = slots;
        spec.worker_timeout = worker_timeout;
        spec.max_retries = max_retries;
        return dispatcher.create_pool(spec, jobs);
    }
    bool welcomed(PoolId p, std::size_t n) {
        return run_until([&] { return dispatcher.stats(p).per_worker.size() >= n; });
    }
    void submit(PoolId p, JobId id, const std::string& key, const Bytes& bundle, Bytes args,
                Clock::duration timeout = Clock::duration::zero()) {
        jobs->create(id, 0, false);
        dispatcher.submit(p, id, key, bundle, std::move(args), timeout);
    }
    bool all_done() {
        return run_until([&] { return jobs->unfinished() == 0; });
    }
    bool in_gate(int n) {
        return run_until([&] { return workers->log->in_gate() >= n; });
    }
    bool exited(PeerId peer) {
        return run_until([&] { return workers->exit_statuses().count(peer) != 0; });
    }
    bool said_goodbye(PeerId peer) const {
        auto g = workers->goodbyes();
        return std::find(g.begin(), g.end(), peer) != g.end();
    }

    // The worker goes silent; the frames it sent before are still taken in (a few steps).
    void cut(PeerId peer) {
        hub->cut_off(peer);
        for (int i = 0; i < 3; ++i) step();
    }
    // Steps until the puppet received a message of `kind` (returned), within a time limit.
    std::optional<Message> await(Puppet& puppet, Kind kind, Clock::duration limit = 5s) {
        std::optional<Message> found;
        run_until([&] { return (found = puppet.take(kind)).has_value(); }, limit);
        return found;
    }

  private:
    static ThreadLauncher& with_world(ThreadLauncher& launcher, WorkerThreads& workers,
                                      std::size_t ranks) {
        for (std::size_t i = 0; i < ranks; ++i) launcher.world.push_back(workers.reserve());
        return launcher;
    }
};

inline std::string label(PeerId peer) { return host_name() + ":w" + std::to_string(peer); }

inline bool contains(const std::string& text, const std::string& part) {
    return text.find(part) != std::string::npos;
}

}  // namespace ppmpi_test
