// What the dispatcher does with background launches that went wrong (Launcher::LaunchReport):
// a launch that failed for good, and a surplus process from a retried launch.
#include "fault_rig.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {
// Its launcher starts puppets: the test speaks for each worker it launches.
struct LaunchRig : FaultCluster {
    LaunchRig() {
        final_grace = 200ms;
        launcher.puppets = true;
    }
};

// ... with a pool of two spawned workers (puppets 1 and 2) that said Hello and were welcomed.
struct TwoWelcomed : LaunchRig {
    PoolId p = pool(2);
    Puppet w1{hub, 1}, w2{hub, 2};
    TwoWelcomed() {
        w1.hello();
        w2.hello();
        REQUIRE(welcomed(p, 2));
    }
};
}  // namespace

TEST_CASE("launches: a worker whose launch failed leaves its pool one smaller, with the reason "
          "in the stats",
          "[dispatcher][launch]") {
    LaunchRig c;
    PoolId p = c.pool(2); // peers 1 and 2, launched in the background
    CHECK(c.dispatcher.stats(p).starting == 2);
    c.launcher.report.failed.emplace_back(2, "MPI_Comm_spawn did not return (test)");
    c.step();
    PoolStats stats = c.dispatcher.stats(p);
    CHECK(stats.start_failures == 1);
    CHECK(stats.start_error == "MPI_Comm_spawn did not return (test)");
    CHECK(stats.starting == 1); // only peer 1 is still waited for
    CHECK(c.dispatcher.pool_size(p) == 1);
    CHECK(c.launcher.lost_peers.empty()); // nothing to forget: it never existed
    Puppet w1(c.hub, 1);
    w1.hello();
    REQUIRE(c.await(w1, Kind::Welcome));
    c.submit(p, 1, "f", "F", "a");
    REQUIRE(c.await(w1, Kind::Task));
    // Its failure is not reported again, and the pool is not refilled behind the user's back.
    c.run_for(50ms);
    CHECK(c.dispatcher.stats(p).start_failures == 1);
    CHECK(c.dispatcher.pool_size(p) == 1);
}

TEST_CASE("launches: a surplus process is told to leave after its Hello and never gets a job",
          "[dispatcher][launch]") {
    LaunchRig c;
    PoolId p = c.pool(1);
    Puppet w1(c.hub, 1);
    w1.hello();
    REQUIRE(c.await(w1, Kind::Welcome));
    PeerId extra = c.workers->reserve();
    c.launcher.report.surplus.push_back(extra);
    c.step();
    Puppet surplus(c.hub, extra);
    surplus.hello();
    REQUIRE(c.await(surplus, Kind::Shutdown));
    CHECK_FALSE(surplus.take(Kind::Welcome));
    for (JobId job = 1; job <= 3; ++job)
        c.submit(p, job, "f", "F", "a");
    c.run_for(50ms);
    CHECK_FALSE(surplus.take(Kind::Task));
    CHECK(c.dispatcher.pool_size(p) == 1);
    CHECK(c.dispatcher.stats(p).per_worker.size() == 1);
}

// A spawn while a worker that was told to leave has not said Goodbye deadlocked under mpirun
// (dispatcher_pools.cpp): it waits, counted as the pool's, in turns that never block.
TEST_CASE("launches: a spawn waits for a departing worker's Goodbye without blocking a turn",
          "[dispatcher][launch]") {
    TwoWelcomed c;
    PoolId p = c.p;
    Puppet& w2 = c.w2;
    REQUIRE(c.launcher.spawned == 2);
    c.dispatcher.resize_pool(p, 1);
    REQUIRE(c.await(w2, Kind::Shutdown));  // it does not answer yet
    c.dispatcher.resize_pool(p, 3);
    c.run_for(50ms);
    CHECK(c.launcher.spawned == 2);  // deferred
    CHECK(c.dispatcher.pool_size(p) == 3);
    CHECK(c.dispatcher.stats(p).starting == 2);
    c.dispatcher.resize_pool(p, 2);  // a deferred worker is the first to be given up
    CHECK(c.dispatcher.stats(p).starting == 1);
    c.launcher.fail_spawn = true;  // and when the spawn comes, it fails: said in the stats
    w2.send({Message{Goodbye{}, {}}});
    REQUIRE(c.run_until([&] { return c.dispatcher.stats(p).start_failures == 1; }));
    CHECK(c.dispatcher.stats(p).start_error == "spawn refused by the test");
    CHECK(c.dispatcher.pool_size(p) == 1);
    c.launcher.fail_spawn = false;
    c.dispatcher.resize_pool(p, 2);  // nothing departs now: at once
    CHECK(c.launcher.spawned == 3);
}

// Workers that share no MPI world (domain -1) cannot run a parallel job; as many spawned
// together could, and where that fails the job fails with NoWorkers, saying why, and leaves
// the parallel jobs' queue (it stayed there, and the next turn looked it up after it
// had ended: the dispatcher thread stopped on an unordered_map::at).
TEST_CASE("launches: a parallel job no regrouping can place fails, and the loop goes on",
          "[dispatcher][launch]") {
    TwoWelcomed c;
    PoolId p = c.p;
    Puppet &w1 = c.w1, &w2 = c.w2;
    c.launcher.fail_spawn = true;
    c.jobs->create(1, 0, false);
    c.dispatcher.submit(p, 1, "f", "F", "a", Clock::duration::zero(), {}, 2);
    std::optional<JobOutcome> o;
    REQUIRE(c.run_until([&] { return (o = c.jobs->take(1)).has_value(); }));
    CHECK(o->outcome == Outcome::NoWorkers);
    CHECK(contains(o->message, "share an MPI world"));
    CHECK(contains(o->message, "spawn refused by the test"));
    CHECK_NOTHROW(c.run_for(50ms));
    CHECK(c.dispatcher.stats(p).start_failures == 1);
    CHECK(c.dispatcher.pool_size(p) == 2);  // in no domain, neither left to make room
    c.submit(p, 2, "f", "F", "b");
    CHECK(c.run_until([&] {
        w1.poll();
        w2.poll();
        return w1.take(Kind::Task).has_value() || w2.take(Kind::Task).has_value();
    }));
}
