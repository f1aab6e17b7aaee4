// Dispatcher + WorkerHost end to end over the loopback transport; worker ranks are threads.
// The test thread drives Dispatcher::step() itself.
#include <catch2/catch.hpp>

#include <set>

#include "fake_launcher.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

struct Cluster {
    std::shared_ptr<LoopbackHub> hub = LoopbackHub::create();
    std::unique_ptr<Transport> master = hub->endpoint(0);
    std::shared_ptr<WorkerThreads> workers = std::make_shared<WorkerThreads>(hub);
    ThreadLauncher launcher{workers};
    Dispatcher dispatcher;
    std::shared_ptr<JobTable> jobs = std::make_shared<JobTable>();

    explicit Cluster(DispatcherOptions options = test_dispatcher_options())
        : dispatcher(*master, launcher, std::move(options)) {}

    ~Cluster() {
        workers->log->open_gate();
        dispatcher.shutdown(final_grace);
        workers->join_all();
    }
    Clock::duration final_grace = 5s;  // for the shutdown at the end of the test

    // Steps the dispatcher until `done()` or the time limit; false on time-out.
    template <class Pred> bool run_until(Pred done, Clock::duration limit = 10s) {
        auto deadline = Clock::now() + limit;
        while (!done()) {
            if (Clock::now() > deadline) return false;
            if (!dispatcher.step(Clock::now())) std::this_thread::sleep_for(100us);
        }
        return true;
    }

    PoolId pool(std::size_t ncpus, std::size_t slots = 1) {
        PoolSpec spec;
        spec.deep_queue = 0;  // pipelining with short queues too (see the deep-queue test)
        spec.ncpus = ncpus;
        spec.slots_per_worker = slots;
        spec.sys_path = {"/srv/app", "/usr/lib/python3/dist-packages"};
        spec.cwd = "/srv/app";
        return dispatcher.create_pool(spec, jobs);
    }

    // Waits until `n` workers of the pool were welcomed.
    bool welcomed(PoolId p, std::size_t n) {
        return run_until([&] { return dispatcher.stats(p).per_worker.size() >= n; });
    }

    void submit(PoolId p, JobId id, const std::string& key, const Bytes& bundle, Bytes args) {
        jobs->create(id, 0, false);
        dispatcher.submit(p, id, key, bundle, std::move(args));
    }

    bool all_done() {
        return run_until([&] { return jobs->unfinished() == 0; });
    }
};

std::string args_of(JobId id) { return "args-" + std::to_string(id) + std::string(1, '\0'); }

std::size_t workers_used(const PoolStats& stats) {
    std::size_t n = 0;
    for (const auto& w : stats.per_worker) n += w.jobs > 0 ? 1 : 0;
    return n;
}

}  // namespace

TEST_CASE("dispatcher: every job's outcome arrives with the right payload", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(3);
    CHECK(c.dispatcher.pool_size(p) == 3);
    const Bytes bundle("BUNDLE\0f", 8);
    for (JobId id = 1; id <= 20; ++id) c.submit(p, id, "f", bundle, args_of(id));
    REQUIRE(c.all_done());

    std::set<std::string> labels;
    for (JobId id = 1; id <= 20; ++id) {
        auto o = c.jobs->take(id);
        REQUIRE(o.has_value());
        CHECK(o->outcome == Outcome::Ok);
        CHECK(o->payload == bundle + ":" + reversed(args_of(id)));
        CHECK(o->seconds == 0.25);
        CHECK(o->worker.rfind(host_name() + ":w", 0) == 0);
        labels.insert(o->worker);
    }
    PoolStats s = c.dispatcher.stats(p);
    CHECK(s.tasks_sent == 20);
    CHECK(s.pending == 0);
    CHECK(s.running == 0);
    CHECK(s.workers == 3);
    CHECK(labels.size() == workers_used(s));
    CHECK(s.function_defs_sent == workers_used(s));  // the bundle crossed once per worker
    CHECK(s.function_bytes_sent == workers_used(s) * bundle.size());
    std::uint64_t total = 0;
    for (const auto& w : s.per_worker) total += w.jobs;
    CHECK(total == 20);
    CHECK(c.workers->started() == 3);
}

TEST_CASE("dispatcher: N jobs on N ready workers run one each", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(4);
    REQUIRE(c.welcomed(p, 4));
    for (JobId id = 1; id <= 4; ++id) c.submit(p, id, "f", "B", args_of(id));
    REQUIRE(c.all_done());
    PoolStats s = c.dispatcher.stats(p);
    REQUIRE(s.per_worker.size() == 4);
    for (const auto& w : s.per_worker) CHECK(w.jobs == 1);
    CHECK(s.function_defs_sent == 4);
    CHECK(s.tasks_sent == 4);

    // Workers were configured from the pool spec.
    auto welcomes = c.workers->log->welcomes();
    REQUIRE(welcomes.size() == 4);
    for (const auto& [peer, w] : welcomes) {
        CHECK(w.worker_id == peer);
        CHECK(w.sys_path == std::vector<std::string>{"/srv/app", "/usr/lib/python3/dist-packages"});
        CHECK(w.cwd == "/srv/app");
        CHECK(w.master_pid == ::getpid());
        CHECK(w.heartbeat_ms == 50);
        CHECK(w.master_timeout_ms == 5000);
    }
}

TEST_CASE("dispatcher: a bundle crosses once per worker and key", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(2);
    REQUIRE(c.welcomed(p, 2));
    for (JobId id = 1; id <= 6; ++id) c.submit(p, id, "f", "F", args_of(id));
    REQUIRE(c.all_done());
    auto after_f = c.dispatcher.stats(p);
    CHECK(after_f.function_defs_sent == workers_used(after_f));

    // The same key again: the workers already hold it, no FunctionDef is sent.
    for (JobId id = 7; id <= 12; ++id) c.submit(p, id, "f", "F", args_of(id));
    // A new key: sent to each worker that runs one of its jobs.
    for (JobId id = 13; id <= 18; ++id) c.submit(p, id, "g", "G", args_of(id));
    REQUIRE(c.all_done());
    for (JobId id = 7; id <= 18; ++id) {
        auto o = c.jobs->take(id);
        REQUIRE(o.has_value());
        CHECK(o->payload == (id <= 12 ? "F:" : "G:") + reversed(args_of(id)));
    }
    auto s = c.dispatcher.stats(p);
    CHECK(s.tasks_sent == 18);
    for (const auto& [peer, keys] : c.workers->log->defines()) {
        CAPTURE(peer);
        CHECK(std::set<std::string>(keys.begin(), keys.end()).size() == keys.size());
    }
    std::size_t defines = 0;
    for (const auto& [peer, keys] : c.workers->log->defines()) defines += keys.size();
    CHECK(s.function_defs_sent == defines);
    CHECK(s.function_bytes_sent == defines * 1);
}

TEST_CASE("dispatcher: a remote error becomes Outcome::RemoteError", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(2);
    c.submit(p, 1, "bad_f", "B", "xyz");
    c.submit(p, 2, "good", "G", "abc");
    REQUIRE(c.all_done());
    auto bad = c.jobs->take(1);
    REQUIRE(bad.has_value());
    CHECK(bad->outcome == Outcome::RemoteError);
    CHECK(bad->payload == "boom:xyz");
    CHECK(bad->seconds == 0.5);
    auto good = c.jobs->take(2);
    REQUIRE(good.has_value());
    CHECK(good->outcome == Outcome::Ok);
    CHECK(good->payload == "G:cba");
}

TEST_CASE("dispatcher: short jobs are pipelined, up to slots_per_worker", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(1, 3);
    REQUIRE(c.welcomed(p, 1));
    c.submit(p, 9, "quick", "Q", args_of(9));  // teaches the dispatcher that jobs are short
    REQUIRE(c.all_done());
    for (JobId id = 1; id <= 5; ++id) c.submit(p, id, "slow", "S", args_of(id));
    REQUIRE(c.run_until([&] { return c.workers->log->in_gate() >= 1; }));
    for (int i = 0; i < 5; ++i) c.dispatcher.step(Clock::now());
    auto s = c.dispatcher.stats(p);
    CHECK(s.running == 3);
    CHECK(s.pending == 2);
    CHECK(s.tasks_sent == 4);
    REQUIRE(s.running_jobs.size() == 1);  // only the first is running; two wait behind it
    CHECK(s.running_jobs[0].job == 1);
    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    CHECK(c.dispatcher.stats(p).tasks_sent == 6);
}

TEST_CASE("dispatcher: long jobs get one queued behind the running one, no more",
          "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(1, 64);
    REQUIRE(c.welcomed(p, 1));
    c.submit(p, 9, "f", "F", args_of(9));  // reports 0.25 s: far over the pipeline budget
    REQUIRE(c.all_done());
    for (JobId id = 1; id <= 4; ++id) c.submit(p, id, "slow", "S", args_of(id));
    REQUIRE(c.run_until([&] { return c.workers->log->in_gate() >= 1; }));
    for (int i = 0; i < 5; ++i) c.dispatcher.step(Clock::now());
    CHECK(c.dispatcher.stats(p).running == 2);
    c.workers->log->open_gate();
    REQUIRE(c.all_done());
}

TEST_CASE("dispatcher: submit to an unknown or destroyed pool throws", "[dispatcher]") {
    Cluster c;
    CHECK_THROWS_AS(c.dispatcher.submit(42, 1, "f", "B", "a"), PpmpiError);
    CHECK_THROWS_AS(c.dispatcher.stats(42), PpmpiError);
    PoolId p = c.pool(1);
    CHECK_THROWS_AS(c.dispatcher.submit(p, 1, "never-seen", "", "a"), ProtocolError);
    c.dispatcher.destroy_pool(p);
    CHECK_THROWS_AS(c.dispatcher.submit(p, 2, "f", "B", "a"), DestroyedError);
    c.dispatcher.destroy_pool(p);  // idempotent
}

TEST_CASE("dispatcher: a failed spawn fails create_pool", "[dispatcher]") {
    Cluster c;
    c.launcher.fail_spawn = true;
    CHECK_THROWS_AS(c.pool(2), PpmpiError);
    CHECK(c.dispatcher.live_workers() == 0);
}

TEST_CASE("dispatcher: destroy_pool fails queued jobs and lets the workers go",
          "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(2);
    for (JobId id = 1; id <= 5; ++id) c.submit(p, id, "f", "B", args_of(id));
    c.dispatcher.destroy_pool(p);  // before any worker said Hello
    for (JobId id = 1; id <= 5; ++id) {
        auto o = c.jobs->take(id);
        REQUIRE(o.has_value());
        CHECK(o->outcome == Outcome::Destroyed);
        CHECK_FALSE(o->message.empty());
    }
    REQUIRE(c.run_until([&] { return c.dispatcher.live_workers() == 0; }));
    c.workers->join_all();
    auto statuses = c.workers->exit_statuses();
    REQUIRE(statuses.size() == 2);
    for (const auto& [peer, status] : statuses) CHECK(status == 0);
    CHECK(c.workers->goodbyes().size() == 2);
    CHECK(c.workers->log->defines().empty());  // no job ever reached a worker
}

TEST_CASE("dispatcher: destroy_pool while jobs run ignores their late results",
          "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(2);
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "slow", "S", "b");
    c.submit(p, 3, "slow", "S", "c");  // stays queued
    REQUIRE(c.run_until([&] { return c.workers->log->in_gate() == 2; }));
    c.dispatcher.destroy_pool(p);
    CHECK(c.jobs->unfinished() == 0);
    c.workers->log->open_gate();  // the running jobs end after the Shutdown
    REQUIRE(c.run_until([&] { return c.dispatcher.live_workers() == 0; }));
    for (int i = 0; i < 20; ++i) c.dispatcher.step(Clock::now());
    for (JobId id = 1; id <= 3; ++id) CHECK(c.jobs->take(id)->outcome == Outcome::Destroyed);
    c.workers->join_all();
    for (const auto& [peer, status] : c.workers->exit_statuses()) CHECK(status == 0);
}

TEST_CASE("dispatcher: resize_pool grows by spawning and shrinks by retiring",
          "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(1);
    REQUIRE(c.welcomed(p, 1));
    c.dispatcher.resize_pool(p, 3);
    CHECK(c.workers->started() == 3);
    CHECK(c.dispatcher.pool_size(p) == 3);
    REQUIRE(c.welcomed(p, 3));
    for (JobId id = 1; id <= 3; ++id) c.submit(p, id, "f", "B", args_of(id));
    REQUIRE(c.all_done());
    CHECK(workers_used(c.dispatcher.stats(p)) == 3);

    c.dispatcher.resize_pool(p, 1);
    CHECK(c.dispatcher.pool_size(p) == 1);
    REQUIRE(c.run_until([&] { return c.dispatcher.live_workers() == 1; }));
    CHECK(c.workers->goodbyes().size() == 2);
    for (JobId id = 4; id <= 6; ++id) c.submit(p, id, "f", "B", args_of(id));
    REQUIRE(c.all_done());
    CHECK(c.workers->started() == 3);  // shrinking spawned nothing

    c.dispatcher.resize_pool(p, 2);
    CHECK(c.workers->started() == 4);
    CHECK(c.dispatcher.pool_size(p) == 2);
}

TEST_CASE("dispatcher: shrinking retires a busy worker after its job", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(1);
    c.submit(p, 1, "slow", "S", "a");
    REQUIRE(c.run_until([&] { return c.workers->log->in_gate() == 1; }));
    c.dispatcher.resize_pool(p, 0);
    CHECK(c.dispatcher.pool_size(p) == 0);
    for (int i = 0; i < 5; ++i) c.dispatcher.step(Clock::now());
    CHECK(c.dispatcher.live_workers() == 1);  // still running job 1
    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    CHECK(c.jobs->take(1)->outcome == Outcome::Ok);
    REQUIRE(c.run_until([&] { return c.dispatcher.live_workers() == 0; }));
}

// Server() waits on this count, so that its first jobs do not pay for the workers' start-up.
TEST_CASE("dispatcher: stats count the workers not heard from yet", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(3);
    CHECK(c.dispatcher.stats(p).starting == 3);  // spawned; no Hello read yet
    REQUIRE(c.run_until([&] { return c.dispatcher.stats(p).starting == 0; }));
    CHECK(c.dispatcher.stats(p).workers == 3);
}

// Shrinking right after create_pool must also count spawned workers that have not said Hello
// yet: they are told to leave (a world rank would go back to the unclaimed ones).
TEST_CASE("dispatcher: shrinking before the workers said Hello", "[dispatcher]") {
    Cluster c;
    PoolId p = c.pool(3);
    c.dispatcher.resize_pool(p, 1);
    REQUIRE(c.run_until([&] { return c.dispatcher.stats(p).per_worker.size() >= 1; }));
    for (int i = 0; i < 50; ++i) {
        c.dispatcher.step(Clock::now());
        std::this_thread::sleep_for(1ms);
    }
    CHECK(c.dispatcher.pool_size(p) == 1);
}

TEST_CASE("dispatcher: shutdown is clean when every worker said goodbye", "[dispatcher]") {
    Cluster c;
    PoolId p1 = c.pool(2);
    PoolId p2 = c.pool(1);
    CHECK(p1 != p2);
    c.submit(p1, 1, "f", "B", "a");
    c.submit(p2, 2, "f", "C", "b");
    REQUIRE(c.all_done());
    CHECK(c.jobs->take(2)->payload == "C:b");
    CHECK(c.dispatcher.live_workers() == 3);
    CHECK(c.dispatcher.shutdown(std::chrono::seconds(10)));
    CHECK(c.dispatcher.live_workers() == 0);
    c.workers->join_all();
    auto statuses = c.workers->exit_statuses();
    REQUIRE(statuses.size() == 3);
    for (const auto& [peer, status] : statuses) CHECK(status == 0);
    CHECK(c.workers->goodbyes().size() == 3);
}

TEST_CASE("dispatcher: shutdown reports a worker that never answers", "[dispatcher]") {
    DispatcherOptions options = test_dispatcher_options();
    options.master_timeout = 500ms;  // so that the cut-off worker gives up soon
    Cluster c(options);
    PoolId p = c.pool(2);
    REQUIRE(c.welcomed(p, 2));
    // The Welcome must have reached the worker before the cut (configure runs after that).
    REQUIRE(c.run_until([&] { return c.workers->log->welcomes().size() == 2; }));
    c.hub->cut_off(1);  // as if worker 1's process died
    auto start = Clock::now();
    CHECK_FALSE(c.dispatcher.shutdown(std::chrono::milliseconds(300)));
    CHECK(Clock::now() - start < 5s);
    CHECK(c.dispatcher.live_workers() == 1);
    CHECK(c.workers->goodbyes() == std::vector<PeerId>{2});
    // Worker 1 hears nothing more from the master and ends on the master time-out.
    c.final_grace = 0s;  // and will never say Goodbye
    c.workers->join_all();
    auto statuses = c.workers->exit_statuses();
    CHECK(statuses[1] == 1);
    CHECK(statuses[2] == 0);
}
