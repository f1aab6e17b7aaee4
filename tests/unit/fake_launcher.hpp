// Test doubles for the end-to-end tests: worker "processes" are threads running
// ppmpi::WorkerHost::serve() over a LoopbackHub, with a fake JobRunner instead of Python.
//
// FakeJobRunner, by function key:
//   "bad..."   -> ResultStatus::Error, payload "boom:" + args
//   "slow..."  -> waits (at most 3 s) for JobRunnerLog::open_gate(), then as below
//   "throw"    -> throws (the runner itself is broken)
//   otherwise  -> ResultStatus::Ok, payload = bundle + ":" + reversed args
// A key never defined on that worker gives an Error "undefined <key>".
#pragma once

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/master/dispatcher.hpp"
#include "ppmpi/master/launcher.hpp"
#include "ppmpi/transport/loopback_transport.hpp"
#include "ppmpi/worker/job_runner.hpp"
#include "ppmpi/worker/worker.hpp"

namespace ppmpi_test {

using namespace ppmpi;
using namespace std::chrono_literals;

inline std::string host_name() {
    char name[256] = {0};
    gethostname(name, sizeof(name) - 1);
    return name;
}

inline std::string reversed(const std::string& s) { return {s.rbegin(), s.rend()}; }

// What the runners of all workers saw; shared and thread-safe.
class JobRunnerLog {
  public:
    void prepared(PeerId peer) {
        std::lock_guard<std::mutex> lock(mutex_);
        prepared_[peer] = welcomes_.count(peer) ? "after configure" : "before configure";
    }
    // "" (never), "before configure" or "after configure".
    std::string when_prepared(PeerId peer) {
        std::lock_guard<std::mutex> lock(mutex_);
        return prepared_.count(peer) ? prepared_[peer] : "";
    }
    void configured(PeerId peer, const Welcome& w) {
        std::lock_guard<std::mutex> lock(mutex_);
        welcomes_[peer] = w;
    }
    void defined(PeerId peer, const std::string& key) {
        std::lock_guard<std::mutex> lock(mutex_);
        defines_[peer].push_back(key);
    }
    std::map<PeerId, Welcome> welcomes() {
        std::lock_guard<std::mutex> lock(mutex_);
        return welcomes_;
    }
    std::map<PeerId, std::vector<std::string>> defines() {
        std::lock_guard<std::mutex> lock(mutex_);
        return defines_;
    }
    // Gate for "slow" jobs: they block until it opens (bounded, see above).
    void wait_gate() {
        ++in_gate_;
        std::unique_lock<std::mutex> lock(mutex_);
        gate_cv_.wait_for(lock, 3s, [&] { return gate_open_; });
    }
    void open_gate() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            gate_open_ = true;
        }
        gate_cv_.notify_all();
    }
    int in_gate() const { return in_gate_.load(); }

  private:
    std::mutex mutex_;
    std::condition_variable gate_cv_;
    bool gate_open_ = false;
    std::atomic<int> in_gate_{0};
    std::map<PeerId, Welcome> welcomes_;
    std::map<PeerId, std::string> prepared_;
    std::map<PeerId, std::vector<std::string>> defines_;
};

class FakeJobRunner : public JobRunner {
  public:
    FakeJobRunner(PeerId self, std::shared_ptr<JobRunnerLog> log)
        : self_(self), log_(std::move(log)) {}
    void prepare() override { log_->prepared(self_); }
    void configure(const Welcome& welcome) override { log_->configured(self_, welcome); }
    void define(const std::string& key, Bytes bundle) override {
        bundles_[key] = std::move(bundle);
        log_->defined(self_, key);
    }
    RunOutcome run(const Task& task, Bytes args, Buffers, std::optional<std::int64_t>) override {
        const std::string& key = task.func_key;
        if (key == "throw") throw std::runtime_error("fake runner is broken");
        if (key.rfind("slow", 0) == 0) log_->wait_gate();
        auto it = bundles_.find(key);
        if (it == bundles_.end()) return {ResultStatus::Error, "undefined " + key, 0.0};
        if (key.rfind("bad", 0) == 0) return {ResultStatus::Error, "boom:" + args, 0.5};
        // "quick" jobs report a tiny run time: after one, the dispatcher pipelines.
        double seconds = key.rfind("quick", 0) == 0 ? 1e-5 : 0.25;
        return {ResultStatus::Ok, it->second + ":" + reversed(args), seconds};
    }

  private:
    PeerId self_;
    std::shared_ptr<JobRunnerLog> log_;
    std::map<std::string, Bytes> bundles_;
};

// Short timeouts so that a worker whose master vanished ends well within the CTest TIMEOUT.
inline WorkerOptions test_worker_options() {
    WorkerOptions o;
    o.first_contact_timeout = 5s;
    o.exit_grace = 5s;  // longer than the 3 s bound of a "slow" job: never _Exit the test
    return o;
}

inline DispatcherOptions test_dispatcher_options() {
    DispatcherOptions o;
    o.master_pid = ::getpid();
    o.master_host = host_name();
    o.heartbeat = 50ms;
    o.master_timeout = 5s;
    return o;
}

// The worker threads ("processes") and what happened to them. Peers are 1, 2, 3, ...
class WorkerThreads {
  public:
    explicit WorkerThreads(std::shared_ptr<LoopbackHub> hub,
                           WorkerOptions options = test_worker_options())
        : hub_(std::move(hub)), options_(options) {}
    ~WorkerThreads() { join_all(); }

    PeerId start() {
        std::lock_guard<std::mutex> lock(mutex_);
        PeerId peer = next_peer_++;
        threads_.emplace_back([this, peer] { serve(peer); });
        return peer;
    }
    // A peer id with no thread behind it: the test plays that worker by hand.
    PeerId reserve() {
        std::lock_guard<std::mutex> lock(mutex_);
        return next_peer_++;
    }
    void join_all() {
        std::vector<std::thread> threads;
        {
            std::lock_guard<std::mutex> lock(mutex_);
            threads.swap(threads_);
        }
        for (auto& t : threads) t.join();
    }
    std::size_t started() {
        std::lock_guard<std::mutex> lock(mutex_);
        return static_cast<std::size_t>(next_peer_ - 1);
    }
    std::map<PeerId, int> exit_statuses() {
        std::lock_guard<std::mutex> lock(mutex_);
        return statuses_;
    }
    void said_goodbye(PeerId peer) {
        std::lock_guard<std::mutex> lock(mutex_);
        goodbyes_.push_back(peer);
    }
    std::vector<PeerId> goodbyes() {
        std::lock_guard<std::mutex> lock(mutex_);
        return goodbyes_;
    }
    // before_close(clean) of each worker that got that far.
    std::map<PeerId, bool> closes() {
        std::lock_guard<std::mutex> lock(mutex_);
        return closes_;
    }
    std::shared_ptr<JobRunnerLog> log = std::make_shared<JobRunnerLog>();

  private:
    void serve(PeerId peer) {
        FakeJobRunner runner(peer, log);
        auto hub = hub_;
        WorkerHost host(
            [this, hub, peer] {
                WorkerEnvironment env;
                env.transport = hub->endpoint(peer);
                env.master = 0;
                env.awaits_release = false;
                env.before_close = [this, peer](bool clean) {
                    std::lock_guard<std::mutex> lock(mutex_);
                    closes_[peer] = clean;
                };
                return env;
            },
            options_);
        int status = host.serve(runner);
        std::lock_guard<std::mutex> lock(mutex_);
        statuses_[peer] = status;
    }

    std::shared_ptr<LoopbackHub> hub_;
    WorkerOptions options_;
    std::mutex mutex_;
    PeerId next_peer_ = 1;
    std::vector<std::thread> threads_;
    std::map<PeerId, int> statuses_;
    std::vector<PeerId> goodbyes_;
    std::map<PeerId, bool> closes_;
};

// The Launcher the dispatcher sees: spawn(n) starts n worker threads (or, with `puppets`,
// reserves n peers that the test plays by hand). `world` lists puppet world ranks (static
// peers, in_world); `ordered` is what can_end_in_order answers for every peer.
class ThreadLauncher : public Launcher {
  public:
    explicit ThreadLauncher(std::shared_ptr<WorkerThreads> workers)
        : workers_(std::move(workers)) {}
    // The threads are joined by WorkerThreads (the test decides when), not here: the master
    // thread destroys its launcher, and must not wait there for a worker's running job.

    std::vector<PeerId> static_peers() override { return world; }
    std::vector<PeerId> spawn(std::size_t count) override {
        if (fail_spawn) throw PpmpiError("spawn refused by the test");
        spawned += count;
        std::vector<PeerId> peers;
        for (std::size_t i = 0; i < count; ++i)
            peers.push_back(puppets ? workers_->reserve() : workers_->start());
        return peers;
    }
    bool in_world(PeerId peer) const override {
        return std::find(world.begin(), world.end(), peer) != world.end();
    }
    std::vector<Release> said_goodbye(PeerId peer) override {
        workers_->said_goodbye(peer);
        return {};
    }
    std::string describe(PeerId peer) const override { return "w" + std::to_string(peer); }
    std::vector<Release> lost(PeerId peer) override {
        lost_peers.push_back(peer);
        return {};
    }
    bool can_end_in_order(PeerId) const override { return ordered; }
    // What the test says background launches did (handed over once).
    LaunchReport collect_launches() override { return std::exchange(report, {}); }

    bool fail_spawn = false;
    std::size_t spawned = 0;  // workers asked for
    bool puppets = false;
    bool ordered = true;
    std::vector<PeerId> world;
    std::vector<PeerId> lost_peers;
    LaunchReport report;

  private:
    std::shared_ptr<WorkerThreads> workers_;
};

}  // namespace ppmpi_test
