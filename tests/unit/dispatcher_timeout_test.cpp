// Dispatcher: per-job timeouts, cancel(), and workers that cannot end in order. A stopped
// worker is told Shutdown{immediate}: its serve() returns without a Goodbye, and before_close
// gets clean=false. The test moves the dispatcher's clock (fault_rig.hpp).
#include <catch2/catch.hpp>

#include "fault_rig.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

// A worker that was stopped: left without Goodbye and without a clean close.
void check_stopped(FaultCluster& c, PeerId peer) {
    CAPTURE(peer);
    REQUIRE(c.exited(peer));
    CHECK(c.workers->exit_statuses()[peer] == 0);
    CHECK_FALSE(c.said_goodbye(peer));
    auto closes = c.workers->closes();
    REQUIRE(closes.count(peer) == 1);
    CHECK_FALSE(closes[peer]);
}

}  // namespace

TEST_CASE("timeout: a job past its timeout fails and its worker is replaced",
          "[dispatcher][timeout]") {
    FaultCluster c;
    PoolId p = c.pool(1, 2, 60s, 1);  // max_retries=1: a charged requeue would fail job 2
    c.submit(p, 9, "quick", "Q", "q");  // short jobs: job 2 is pipelined behind job 1
    REQUIRE(c.all_done());
    c.submit(p, 1, "slow", "S", "a", 1s);
    c.submit(p, 2, "slow", "S", "b");  // no limit; waits behind job 1 on the same worker
    REQUIRE(c.in_gate(1));
    REQUIRE(c.run_until([&] { return c.dispatcher.stats(p).running == 2; }));
    c.jump(500ms);
    c.step();
    CHECK_FALSE(c.jobs->is_done(1));
    c.jump(501ms);  // past the deadline, whatever the real time since it was sent
    c.step();
    REQUIRE(c.jobs->is_done(1));
    auto o = c.jobs->take(1);
    CHECK(o->outcome == Outcome::Timeout);
    CHECK(contains(o->message, "timeout of 1 s"));
    CHECK(contains(o->message, label(1)));
    CHECK(o->worker == label(1));
    CHECK(c.launcher.lost_peers == std::vector<PeerId>{1});
    PoolStats s = c.dispatcher.stats(p);
    CHECK(s.jobs_requeued == 1);  // job 2, not charged: its worker did not fail
    CHECK(s.pending == 1);
    CHECK(c.workers->started() == 2);
    CHECK(c.dispatcher.pool_size(p) == 1);

    c.workers->log->open_gate();  // worker 1's job ends; the worker has left already
    REQUIRE(c.all_done());
    auto two = c.jobs->take(2);
    CHECK(two->outcome == Outcome::Ok);
    CHECK(two->payload == "S:b");
    CHECK(two->worker == label(2));
    check_stopped(c, 1);
}

TEST_CASE("timeout: a job within its timeout completes", "[dispatcher][timeout]") {
    FaultCluster c;
    PoolId p = c.pool(1, 1, 60s);
    c.submit(p, 1, "slow", "S", "a", 2s);
    REQUIRE(c.in_gate(1));
    c.jump(1s);
    c.step();
    CHECK_FALSE(c.jobs->is_done(1));
    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    CHECK(c.jobs->take(1)->outcome == Outcome::Ok);
    CHECK(c.launcher.lost_peers.empty());
    CHECK(c.dispatcher.stats(p).workers_lost == 0);
    CHECK(c.dispatcher.shutdown(5s));  // nothing was lost: a clean end
}

// Job 1 has no limit; job 2's limit starts when it is sent, after job 1.
TEST_CASE("timeout: no limit, and a limit that counts from when the job is sent",
          "[dispatcher][timeout]") {
    FaultCluster c;
    PoolId p = c.pool(1, 1, std::chrono::hours(2));
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "f", "F", "b", 1s);
    REQUIRE(c.in_gate(1));
    c.jump(std::chrono::hours(1));
    c.step();
    CHECK_FALSE(c.jobs->is_done(1));
    CHECK_FALSE(c.jobs->is_done(2));
    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    CHECK(c.jobs->take(1)->outcome == Outcome::Ok);
    CHECK(c.jobs->take(2)->outcome == Outcome::Ok);
    CHECK(c.launcher.lost_peers.empty());
}

TEST_CASE("cancel: a pending job is cancelled and never runs", "[dispatcher][cancel]") {
    FaultCluster c;
    PoolId p = c.pool(1);
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "f", "F", "b");
    REQUIRE(c.in_gate(1));
    CHECK(c.dispatcher.stats(p).pending == 1);
    CHECK(c.dispatcher.cancel(p, 2));
    auto o = c.jobs->take(2);
    REQUIRE(o.has_value());
    CHECK(o->outcome == Outcome::Cancelled);
    CHECK(c.dispatcher.stats(p).pending == 0);
    CHECK_FALSE(c.dispatcher.cancel(p, 2));  // already over

    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    c.run_for(20ms);
    CHECK(c.jobs->take(1)->outcome == Outcome::Ok);
    CHECK_FALSE(c.dispatcher.cancel(p, 1));   // finished
    CHECK_FALSE(c.dispatcher.cancel(p, 99));  // never submitted
    CHECK(c.dispatcher.stats(p).tasks_sent == 1);
    CHECK(c.workers->log->defines()[1] == std::vector<std::string>{"slow"});
    CHECK(c.launcher.lost_peers.empty());
    CHECK(c.workers->started() == 1);
}

TEST_CASE("cancel: a running job's worker is stopped and replaced", "[dispatcher][cancel]") {
    FaultCluster c;
    PoolId p = c.pool(1);
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "f", "F", "b");
    REQUIRE(c.in_gate(1));
    CHECK(c.dispatcher.cancel(p, 1));
    auto o = c.jobs->take(1);  // at once, without waiting for the worker
    REQUIRE(o.has_value());
    CHECK(o->outcome == Outcome::Cancelled);
    CHECK_FALSE(c.dispatcher.cancel(p, 1));
    CHECK(c.launcher.lost_peers == std::vector<PeerId>{1});
    c.step();  // the replacement is spawned in the dispatcher's next turn
    CHECK(c.workers->started() == 2);
    CHECK(c.dispatcher.pool_size(p) == 1);

    REQUIRE(c.all_done());  // job 2 on the replacement; the gate is still shut
    auto two = c.jobs->take(2);
    CHECK(two->outcome == Outcome::Ok);
    CHECK(two->worker == label(2));
    CHECK(c.dispatcher.stats(p).jobs_requeued == 0);
    c.workers->log->open_gate();
    check_stopped(c, 1);
}

TEST_CASE("cancel: a job of a destroyed or unknown pool is not cancelled",
          "[dispatcher][cancel]") {
    FaultCluster c;
    PoolId p = c.pool(1);
    c.submit(p, 1, "f", "F", "a");
    c.dispatcher.destroy_pool(p);
    CHECK_FALSE(c.dispatcher.cancel(p, 1));
    CHECK(c.jobs->take(1)->outcome == Outcome::Destroyed);
    CHECK_THROWS_AS(c.dispatcher.cancel(p + 1, 1), PpmpiError);
}

TEST_CASE("destroy: workers that cannot end in order leave at once",
          "[dispatcher][timeout]") {
    FaultCluster c;
    PoolId p = c.pool(2);
    REQUIRE(c.welcomed(p, 2));
    c.launcher.ordered = false;
    c.dispatcher.destroy_pool(p);
    CHECK(c.dispatcher.live_workers() == 0);  // no Goodbye awaited
    c.step();                                 // the Shutdowns leave
    check_stopped(c, 1);
    check_stopped(c, 2);
    CHECK(c.launcher.lost_peers.empty());  // told to leave, not lost
}

TEST_CASE("destroy: shutdown does not wait for workers that cannot end in order",
          "[dispatcher][timeout]") {
    FaultCluster c;
    c.launcher.puppets = true;
    PoolId p = c.pool(1);
    Puppet w1(c.hub, 1);
    w1.hello();
    REQUIRE(c.await(w1, Kind::Welcome));
    c.launcher.ordered = false;
    auto start = Clock::now();
    c.dispatcher.shutdown(10s);
    CHECK(Clock::now() - start < 2s);
    auto down = w1.take(Kind::Shutdown);
    REQUIRE(down.has_value());
    CHECK(std::get<Shutdown>(down->header).immediate);
    CHECK(c.dispatcher.live_workers() == 0);
    CHECK(c.jobs->unfinished() == 0);
    (void)p;
}

TEST_CASE("cancel: running_too=false leaves a running job alone (a future's cancel)",
          "[dispatcher][cancel]") {
    FaultCluster c;
    PoolId p = c.pool(1);
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "f", "F", "b");
    REQUIRE(c.in_gate(1));
    CHECK_FALSE(c.dispatcher.cancel(p, 1, false));  // running: not cancelled, worker kept
    CHECK(c.dispatcher.cancel(p, 2, false));         // queued: cancelled
    CHECK(c.jobs->take(2)->outcome == Outcome::Cancelled);
    CHECK(c.launcher.lost_peers.empty());

    PoolStats running = c.dispatcher.stats(p);
    REQUIRE(running.running_jobs.size() == 1);
    CHECK(running.running_jobs[0].job == 1);
    CHECK(running.running_jobs[0].worker == label(1));
    CHECK(running.running_jobs[0].seconds >= 0.0);

    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    CHECK(c.jobs->take(1)->outcome == Outcome::Ok);
    CHECK(c.dispatcher.stats(p).running_jobs.empty());
    CHECK(c.workers->started() == 1);
}

TEST_CASE("timeout: a pipelined job's time counts from when it starts, not when it was sent",
          "[dispatcher][timeout]") {
    FaultCluster c;
    PoolId p = c.pool(1, 2, 60s);
    c.submit(p, 9, "quick", "Q", "q");
    REQUIRE(c.all_done());
    c.submit(p, 1, "slow", "S", "a");      // no limit, holds the worker
    c.submit(p, 2, "f", "F", "b", 1s);     // sent behind it
    REQUIRE(c.in_gate(1));
    REQUIRE(c.run_until([&] { return c.dispatcher.stats(p).running == 2; }));
    c.jump(5s);
    c.step();
    CHECK_FALSE(c.jobs->is_done(2));  // it waited, it did not run
    CHECK(c.launcher.lost_peers.empty());
    c.workers->log->open_gate();
    REQUIRE(c.all_done());
    CHECK(c.jobs->take(1)->outcome == Outcome::Ok);
    CHECK(c.jobs->take(2)->outcome == Outcome::Ok);
}

TEST_CASE("faults: only the job a lost worker was running is charged", "[dispatcher][faults]") {
    FaultCluster c;
    PoolId p = c.pool(1, 4, 2s, 1);  // max_retries=1: a charged job fails at once
    c.submit(p, 9, "quick", "Q", "q");
    REQUIRE(c.all_done());
    c.submit(p, 1, "slow", "S", "a");
    c.submit(p, 2, "f", "F", "b");
    c.submit(p, 3, "f", "F", "c");
    REQUIRE(c.in_gate(1));
    REQUIRE(c.run_until([&] { return c.dispatcher.stats(p).running == 3; }));
    c.cut(1);  // worker 1 hangs while running job 1; jobs 2 and 3 only wait behind it
    c.jump(2001ms);
    c.step();
    REQUIRE(c.launcher.lost_peers == std::vector<PeerId>{1});
    auto one = c.jobs->take(1);
    REQUIRE(one.has_value());
    CHECK(one->outcome == Outcome::WorkerLost);
    c.workers->log->open_gate();
    REQUIRE(c.all_done());  // on the replacement, not charged
    CHECK(c.jobs->take(2)->outcome == Outcome::Ok);
    CHECK(c.jobs->take(3)->outcome == Outcome::Ok);
}
