// Dispatcher faults (dispatcher_faults.cpp): lost workers, requeues, max_retries, world ranks.
// Workers are threads (or puppets the test plays); the test moves the dispatcher's clock, so a
// worker_timeout passes without sleeping. A thread worker's Hello carries this process's pid,
// which is always alive and never killed, so only silence can make it lost here.
#include <catch2/catch.hpp>

#include <algorithm>

#include "fault_rig.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

std::uint64_t total_jobs(const PoolStats& stats) {
    std::uint64_t n = 0;
    for (const auto& w : stats.per_worker) n += w.jobs;
    return n;
}

JobId job_of(const std::optional<Message>& task) {
    REQUIRE(task.has_value());
    return std::get<Task>(task->header).job_id;
}

}  // namespace

TEST_CASE("faults: a silent worker is lost and its job runs again elsewhere, once",
          "[dispatcher][faults]") {
    FaultCluster c;
    PoolId p = c.pool(1, 1, 2s);
    c.submit(p, 1, "slow", "S", "abc");
    REQUIRE(c.in_gate(1));
    c.cut(1);  // worker 1 hangs mid-job
    c.jump(1500ms);
    c.step();
    CHECK(c.launcher.lost_peers.empty());  // silent, but not for worker_timeout yet
    c.jump(501ms);                         // now silent for more than worker_timeout
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    PoolStats s = c.dispatcher.stats(p);
    CHECK(s.workers_lost == 1);
    CHECK(s.jobs_requeued == 1);
    CHECK(s.pending == 1);
    CHECK(s.running == 0);
    CHECK(c.workers->started() == 2);  // a replacement was spawned
    CHECK(c.dispatcher.pool_size(p) == 1);
    CHECK(c.dispatcher.any_worker_lost());
    CHECK_FALSE(c.jobs->is_done(1));

    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    auto o = c.jobs->take(1);
    REQUIRE(o.has_value());
    CHECK(o->outcome == Outcome::Ok);
    CHECK(o->payload == "S:cba");
    CHECK(o->worker == label(2));
    s = c.dispatcher.stats(p);
    CHECK(s.tasks_sent == 2);
    CHECK(total_jobs(s) == 1);  // one result counted, from worker 2
    CHECK(s.workers_lost == 1);
    CHECK_FALSE(c.dispatcher.shutdown(5s));  // every live worker said Goodbye, but one was lost
    CHECK(c.said_goodbye(2));
    CHECK_FALSE(c.said_goodbye(1));
}

TEST_CASE("faults: of several workers only the silent one is lost", "[dispatcher][faults]") {
    FaultCluster c;
    PoolId p = c.pool(3, 1, 2s);
    REQUIRE(c.welcomed(p, 3));
    c.cut(2);
    const auto cut_at = c.now();
    // Fake time runs ahead in 100 ms jumps, each followed by 60 ms of real stepping in which
    // the live workers' heartbeats (every 50 ms) come in.
    auto advance_until = [&](auto done, Clock::duration most) {
        auto from = c.now();
        while (!done() && c.now() - from < most) {
            c.jump(100ms);
            c.run_for(60ms);
        }
    };
    advance_until([&] { return !c.launcher.lost_peers.empty(); }, 10s);
    const auto lost_after = c.now() - cut_at;
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{2});
    CHECK(lost_after > 1s);  // not declared lost long before its worker_timeout
    advance_until([] { return false; }, 3s);  // more than worker_timeout again
    CHECK(c.launcher.lost_peers == std::vector<PeerId>{2});

    PoolStats s = c.dispatcher.stats(p);
    CHECK(s.workers_lost == 1);
    CHECK(s.jobs_requeued == 0);  // it was idle
    CHECK(c.workers->started() == 4);
    CHECK(c.dispatcher.pool_size(p) == 3);
    REQUIRE(c.welcomed(p, 4));
    for (JobId id = 1; id <= 6; ++id) c.submit(p, id, "f", "F", "x");
    REQUIRE(c.all_done());
    for (const auto& w : c.dispatcher.stats(p).per_worker)
        if (w.label == label(2)) CHECK(w.jobs == 0);
    CHECK(total_jobs(c.dispatcher.stats(p)) == 6);
}

// Job 1 "takes down" every worker it runs on: the test cuts off whichever worker runs it.
TEST_CASE("faults: a job that took down max_retries workers fails with WorkerLost",
          "[dispatcher][faults]") {
    FaultCluster c;
    PoolId p = c.pool(1, 1, 2s, 3);
    c.submit(p, 1, "slow", "S", "x");
    c.submit(p, 2, "f", "F", "b");
    c.submit(p, 3, "f", "F", "c");
    for (PeerId k = 1; k <= 3; ++k) {
        CAPTURE(k);
        REQUIRE(c.in_gate(static_cast<int>(k)));
        REQUIRE(c.workers->started() == static_cast<std::size_t>(k));  // it runs on the newest
        c.cut(k);
        c.jump(2s + 1ms);
        c.step();
        REQUIRE(c.launcher.lost_peers.size() == static_cast<std::size_t>(k));
        CHECK(c.jobs->is_done(1) == (k == 3));  // requeued twice, failed at the third loss
        CHECK(c.dispatcher.stats(p).jobs_requeued == std::min<std::uint64_t>(k, 2));
    }
    auto o = c.jobs->take(1);
    REQUIRE(o.has_value());
    CHECK(o->outcome == Outcome::WorkerLost);
    CHECK(contains(o->message, label(1) + ", " + label(2) + ", " + label(3)));
    CHECK(contains(o->message, "max_retries=3"));

    REQUIRE(c.all_done());  // the other jobs still run, on the fourth worker
    for (JobId id : {JobId(2), JobId(3)}) {
        auto r = c.jobs->take(id);
        REQUIRE(r.has_value());
        CHECK(r->outcome == Outcome::Ok);
        CHECK(r->worker == label(4));
    }
    PoolStats s = c.dispatcher.stats(p);
    CHECK(s.workers_lost == 3);
    CHECK(s.jobs_requeued == 2);
    CHECK(c.workers->started() == 4);
    CHECK(c.dispatcher.pool_size(p) == 1);
}

TEST_CASE("faults: a lost worker is never heard or spoken to again", "[dispatcher][faults]") {
    FaultCluster c;
    c.final_grace = 200ms;  // puppets do not answer the final Shutdown
    c.launcher.puppets = true;
    PoolId p = c.pool(1, 1, 2s);
    Puppet w1(c.hub, 1);
    w1.hello();
    REQUIRE(c.await(w1, Kind::Welcome));
    c.submit(p, 1, "f", "F", "a");
    CHECK(job_of(c.await(w1, Kind::Task)) == 1);
    c.step();
    w1.poll();
    w1.inbox.clear();
    c.jump(2s + 1ms);  // w1 never answers
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    REQUIRE(c.workers->started() == 2);

    w1.send({{Result{1, ResultStatus::Ok, 0.1}, "late"}});  // while job 1 is queued again
    c.run_for(20ms);
    CHECK_FALSE(c.jobs->is_done(1));
    Puppet w2(c.hub, 2);
    w2.hello();
    CHECK(job_of(c.await(w2, Kind::Task)) == 1);
    CHECK(w2.take(Kind::FunctionDef).has_value());  // w2 had not seen the function yet
    w1.send({{Result{1, ResultStatus::Ok, 0.1}, "late"}, {Goodbye{}, {}}});  // while w2 runs it
    c.run_for(20ms);
    CHECK_FALSE(c.jobs->is_done(1));
    CHECK_FALSE(c.said_goodbye(1));  // a lost worker's Goodbye is not taken either

    w2.send({{Result{1, ResultStatus::Ok, 0.2}, "fresh"}});
    REQUIRE(c.all_done());
    auto o = c.jobs->take(1);
    REQUIRE(o.has_value());
    CHECK(o->payload == "fresh");
    CHECK(o->worker == label(2));
    CHECK(o->seconds == 0.2);
    c.run_for(150ms);  // several heartbeat periods
    CHECK(w1.poll() == 0);  // not even a Heartbeat since it was lost
    CHECK(w2.poll() > 0);
}

TEST_CASE("faults: a spawned worker that never says Hello is lost after start_timeout",
          "[dispatcher][faults]") {
    DispatcherOptions options = fault_options();
    options.start_timeout = 3s;
    FaultCluster c(options);
    c.launcher.puppets = true;  // worker 1 never says anything
    PoolId p = c.pool(1, 1, 1s);
    c.launcher.puppets = false;  // its replacement is a real worker
    c.submit(p, 1, "f", "F", "a");
    c.jump(2s);
    c.step();
    CHECK(c.launcher.lost_peers.empty());  // past worker_timeout, but that is after Hello
    c.jump(1001ms);
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    CHECK(c.dispatcher.stats(p).jobs_requeued == 0);  // the job never left the queue
    CHECK(c.dispatcher.stats(p).workers_lost == 1);
    REQUIRE(c.all_done());
    auto o = c.jobs->take(1);
    REQUIRE(o.has_value());
    CHECK(o->outcome == Outcome::Ok);
    CHECK(o->worker == label(2));
    CHECK(c.dispatcher.stats(p).starting == 0);  // the lost one is not waited for (Server())
}

TEST_CASE("faults: a lost world rank that cannot be replaced shrinks the pool",
          "[dispatcher][faults]") {
    FaultCluster c(fault_options(), 2);  // world ranks 1 and 2, played by the test
    c.final_grace = 200ms;
    c.launcher.fail_spawn = true;  // e.g. under srun
    Puppet r1(c.hub, 1), r2(c.hub, 2);
    r1.hello();
    r2.hello();
    PoolId p = c.pool(2, 1, 2s);
    REQUIRE(c.await(r1, Kind::Welcome));
    REQUIRE(c.await(r2, Kind::Welcome));
    c.jump(2s + 1ms);
    r2.send({{Heartbeat{}, {}}});  // taken in by the step, before the liveness check
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    CHECK(c.dispatcher.pool_size(p) == 1);
    CHECK(c.workers->started() == 2);  // nothing spawned

    SECTION("the rest of the world still ends in order: Release{finalize=true}") {
        c.dispatcher.destroy_pool(p);
        auto down = c.await(r2, Kind::Shutdown);
        REQUIRE(down.has_value());
        CHECK_FALSE(std::get<Shutdown>(down->header).immediate);
        r2.send({{Goodbye{}, {}}});
        REQUIRE(c.run_until([&] { return c.dispatcher.live_workers() == 0; }));
        CHECK_FALSE(c.dispatcher.shutdown(1s));
        auto release = r2.take(Kind::Release);
        REQUIRE(release.has_value());
        CHECK(std::get<Release>(release->header).finalize);
    }
    SECTION("it said Goodbye before the world could no longer end: Release{finalize=false}") {
        c.dispatcher.destroy_pool(p);
        REQUIRE(c.await(r2, Kind::Shutdown).has_value());
        r2.send({{Goodbye{}, {}}});
        REQUIRE(c.run_until([&] { return c.dispatcher.live_workers() == 0; }));
        c.launcher.ordered = false;  // the launcher learned of the loss after the Goodbye
        CHECK_FALSE(c.dispatcher.shutdown(1s));
        auto release = r2.take(Kind::Release);
        REQUIRE(release.has_value());
        CHECK_FALSE(std::get<Release>(release->header).finalize);
    }
    SECTION("it cannot end in order any more: Shutdown{immediate}, no Release") {
        c.launcher.ordered = false;  // what MpiLauncher says once a world rank was lost
        c.dispatcher.destroy_pool(p);
        CHECK(c.dispatcher.live_workers() == 0);  // no Goodbye awaited
        auto down = c.await(r2, Kind::Shutdown);
        REQUIRE(down.has_value());
        CHECK(std::get<Shutdown>(down->header).immediate);
        CHECK_FALSE(c.dispatcher.shutdown(1s));
        CHECK_FALSE(r2.take(Kind::Release).has_value());
    }
}

TEST_CASE("faults: a pool whose lost worker cannot be replaced fails its jobs with NoWorkers "
          "until set_ncpus brings a worker back", "[dispatcher][faults]") {
    FaultCluster c;
    PoolId p = c.pool(1, 1, 2s);
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "f", "F", "b");
    REQUIRE(c.in_gate(1));
    c.launcher.fail_spawn = true;
    c.cut(1);
    c.jump(2s + 1ms);
    CHECK_NOTHROW(c.step());  // logged; the loop goes on
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    CHECK(c.dispatcher.pool_size(p) == 0);
    // Queued jobs (the lost worker's job went back to the queue) fail at once, naming why.
    for (JobId job : {1, 2}) {
        auto o = c.jobs->take(job);
        REQUIRE(o.has_value());
        CHECK(o->outcome == Outcome::NoWorkers);
        CHECK(contains(o->message, "spawn refused by the test"));
        CHECK(contains(o->message, "set_ncpus"));
    }
    c.submit(p, 3, "f", "F", "c");  // so does a job submitted now
    c.step();
    auto late = c.jobs->take(3);
    REQUIRE(late.has_value());
    CHECK(late->outcome == Outcome::NoWorkers);
    c.launcher.fail_spawn = false;
    c.dispatcher.resize_pool(p, 1);  // set_ncpus brings a worker back
    c.workers->log->open_gate();
    c.submit(p, 4, "f", "F", "d");
    REQUIRE(c.all_done());
    auto o = c.jobs->take(4);
    CHECK(o->outcome == Outcome::Ok);
    CHECK(o->worker == label(2));
}

TEST_CASE("faults: a lost world rank is replaced by a spawned worker", "[dispatcher][faults]") {
    FaultCluster c(fault_options(), 2);  // world ranks 1 and 2, played by the test
    c.final_grace = 200ms;
    Puppet r1(c.hub, 1), r2(c.hub, 2);
    r1.hello();
    r2.hello();
    PoolId p = c.pool(2, 1, 2s);
    REQUIRE(c.await(r1, Kind::Welcome));
    REQUIRE(c.await(r2, Kind::Welcome));
    c.jump(2s + 1ms);
    r2.send({{Heartbeat{}, {}}});
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    CHECK(c.dispatcher.pool_size(p) == 2);  // r2 and a spawned worker
    REQUIRE(c.welcomed(p, 3));  // r1, r2 and the spawned worker 3 have stats rows
    // r2 (a puppet) never answers its jobs; the spawned worker answers its own.
    for (JobId job = 1; job <= 4; ++job) c.submit(p, job, "f", "F", "a");
    REQUIRE(c.run_until([&] { return c.jobs->unfinished() < 4; }));
    std::size_t by_spawned = 0;
    for (JobId job = 1; job <= 4; ++job)
        if (auto o = c.jobs->take(job)) by_spawned += o->outcome == Outcome::Ok && o->worker == label(3);
    CHECK(by_spawned >= 1);
}

// A host whose every world rank is lost may have lost mpirun's daemon too; a spawn would then
// end the whole job, so none is made: the pool shrinks, and growing it is refused saying why.
// (Losing a rank of this host, or one of a host that keeps another, is replaced as usual.)
TEST_CASE("faults: no spawn after every world rank of another host is lost",
          "[dispatcher][faults]") {
    FaultCluster c(fault_options(), 3);  // world ranks 1, 2 on "far-host", 3 on this host
    c.final_grace = 200ms;
    Puppet r1(c.hub, 1), r2(c.hub, 2), r3(c.hub, 3);
    r1.hello_from("far-host");
    r2.hello_from("far-host");
    r3.hello();
    PoolId p = c.pool(3, 1, 2s);
    for (Puppet* r : {&r1, &r2, &r3}) REQUIRE(c.await(*r, Kind::Welcome));
    c.jump(2s + 1ms);
    r3.send({{Heartbeat{}, {}}});
    c.step();
    REQUIRE(c.launcher.lost_peers.size() == 2);  // ranks 1 and 2: far-host has none left
    CHECK(c.dispatcher.pool_size(p) == 1);
    CHECK(c.workers->started() == 3);  // the three ranks; nothing spawned
    CHECK_THROWS_WITH(c.dispatcher.resize_pool(p, 3),
                      Catch::Contains("every worker rank on far-host"));
}

// Only a world rank that said Goodbye and waits for Release still gets Heartbeats; a lost one,
// or one told Shutdown{immediate}, never hears from the master again.
TEST_CASE("faults: a Gone world rank gets no more Heartbeats", "[dispatcher][faults]") {
    FaultCluster c(fault_options(), 2);
    c.final_grace = 200ms;
    Puppet r1(c.hub, 1), r2(c.hub, 2);
    r1.hello();
    r2.hello();
    PoolId p = c.pool(2, 1, 2s);
    REQUIRE(c.await(r1, Kind::Welcome));
    REQUIRE(c.await(r2, Kind::Welcome));
    c.jump(2s + 1ms);
    r2.send({{Heartbeat{}, {}}});
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    c.launcher.ordered = false;
    c.dispatcher.destroy_pool(p);
    REQUIRE(c.await(r2, Kind::Shutdown).has_value());  // immediate: r2 is Gone at once
    r1.poll();
    r1.inbox.clear();
    r2.inbox.clear();
    c.run_for(150ms);  // several heartbeat periods
    CHECK(r1.poll() == 0);  // lost
    CHECK(r2.poll() == 0);  // told to leave at once
}

// Regression: spawned workers were watched from the time of the last step(), which before the
// first step was Clock::time_point{}, so the first step declared them all lost (Master::loop
// runs commands such as create_pool before its first step).
TEST_CASE("faults: workers spawned before the first step are not lost at once",
          "[dispatcher][faults]") {
    FaultCluster c(fault_options(), 0, false);
    PoolId p = c.pool(2);
    REQUIRE(c.welcomed(p, 2));
    CHECK(c.launcher.lost_peers.empty());
    CHECK(c.workers->started() == 2);
}

// A master starved of CPU reads its frames late: while it has not read everything that came,
// a worker's silence may be heartbeats still unread, and is counted only up to the last moment
// it had read everything.
TEST_CASE("faults: a master behind on its reading does not take unread frames for silence",
          "[dispatcher][faults]") {
    FaultCluster c;
    c.final_grace = 200ms;  // puppets do not answer the final Shutdown
    c.launcher.puppets = true;
    PoolId p = c.pool(2, 64, 1s);
    Puppet w1{c.hub, 1}, w2{c.hub, 2};
    w1.hello();
    w2.hello();
    REQUIRE(c.await(w1, Kind::Welcome));
    REQUIRE(c.await(w2, Kind::Welcome));
    for (JobId job = 1; job <= 40; ++job) c.submit(p, job, "f", "F", "a");
    std::vector<JobId> on_w1;
    c.run_for(50ms);
    while (auto task = w1.take(Kind::Task)) on_w1.push_back(std::get<Task>(task->header).job_id);
    REQUIRE(on_w1.size() == 2);  // one running, one waiting behind it
    c.step();  // reads everything there is: drained now
    // Results each in a frame of its own: a turn reads one (it stops after a frame that ended
    // a job), so the master stays behind while the clock passes w2's worker_timeout.
    for (JobId job : on_w1) w1.send({{Result{job, ResultStatus::Ok, 0.0}, "r"}});
    c.jump(1500ms);
    c.step();
    CHECK(c.launcher.lost_peers.empty());  // w2 silent for 1.5 s, but the master is behind
    c.step();                               // the second result
    c.step();                               // drained
    CHECK(c.launcher.lost_peers.empty());
    c.jump(1100ms);  // past the timeout w2 was given once more
    c.step();
    c.step();
    auto lost = c.launcher.lost_peers;  // silent both, now that the master caught up
    std::sort(lost.begin(), lost.end());
    CHECK(lost == std::vector<PeerId>{1, 2});
}
