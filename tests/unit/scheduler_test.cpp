// scheduler.hpp: FIFO queue, least-loaded assignment, requeue of a lost worker's jobs.
#include <catch2/catch.hpp>

#include <algorithm>
#include <map>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/scheduler.hpp"

using namespace ppmpi;

namespace {

std::vector<JobId> jobs_of(const std::vector<Scheduler::Assignment>& assignments) {
    std::vector<JobId> out;
    for (const auto& a : assignments) out.push_back(a.job);
    return out;
}

std::map<PeerId, std::size_t> load_of(const std::vector<Scheduler::Assignment>& assignments) {
    std::map<PeerId, std::size_t> load;
    for (const auto& a : assignments) ++load[a.worker];
    return load;
}

}  // namespace

TEST_CASE("scheduler: jobs are handed out in FIFO order", "[scheduler]") {
    Scheduler s;
    s.add_worker(1);
    for (JobId j : {5, 3, 9, 1}) s.enqueue(j);
    CHECK(s.pending() == 4);
    std::vector<JobId> order;
    for (int i = 0; i < 4; ++i) {
        auto a = s.assign();
        REQUIRE(a.size() == 1);
        CHECK(a[0].worker == 1);
        CHECK(s.assign().empty());  // the only slot is busy
        order.push_back(a[0].job);
        CHECK(s.complete(1, a[0].job));
    }
    CHECK(order == std::vector<JobId>{5, 3, 9, 1});
    CHECK(s.pending() == 0);
    CHECK(s.running() == 0);
}

TEST_CASE("scheduler: no workers means nothing is assigned", "[scheduler]") {
    Scheduler s;
    s.enqueue(1);
    CHECK(s.assign().empty());
    CHECK(s.pending() == 1);
    CHECK(s.active_workers() == 0);
}

TEST_CASE("scheduler: N jobs on N workers run one each", "[scheduler]") {
    Scheduler s(4);  // even with spare slots, the least loaded worker goes first
    for (PeerId w = 10; w < 15; ++w) s.add_worker(w);
    for (JobId j = 1; j <= 5; ++j) s.enqueue(j);
    auto a = s.assign();
    REQUIRE(a.size() == 5);
    auto load = load_of(a);
    CHECK(load.size() == 5);
    for (const auto& [worker, n] : load) CHECK(n == 1);
    CHECK(jobs_of(a) == std::vector<JobId>{1, 2, 3, 4, 5});
    for (const auto& x : a) CHECK(s.worker_of(x.job) == x.worker);
    CHECK(s.running() == 5);
}

TEST_CASE("scheduler: least loaded worker gets the next job", "[scheduler]") {
    Scheduler s(3);
    s.add_worker(1);
    s.add_worker(2);
    for (JobId j = 1; j <= 4; ++j) s.enqueue(j);
    auto first = s.assign();
    REQUIRE(first.size() == 4);
    CHECK(load_of(first) == std::map<PeerId, std::size_t>{{1, 2}, {2, 2}});
    // Worker 2 finishes both of its jobs: the next two go to it, not to worker 1.
    for (auto job : s.in_flight(2)) CHECK(s.complete(2, job));
    s.enqueue(5);
    s.enqueue(6);
    auto second = s.assign();
    REQUIRE(second.size() == 2);
    CHECK(second[0].worker == 2);
    // worker 2 now has 1 job and worker 1 has 2: job 6 goes to worker 2 as well
    CHECK(second[1].worker == 2);
}

TEST_CASE("scheduler: slots_per_worker bounds the jobs in flight per worker", "[scheduler]") {
    for (std::size_t slots : {1u, 2u, 3u}) {
        Scheduler s(slots);
        s.add_worker(1);
        s.add_worker(2);
        for (JobId j = 1; j <= 20; ++j) s.enqueue(j);
        auto a = s.assign();
        INFO("slots " << slots);
        CHECK(a.size() == 2 * slots);
        CHECK(s.in_flight(1).size() == slots);
        CHECK(s.in_flight(2).size() == slots);
        CHECK(s.pending() == 20 - 2 * slots);
        CHECK(s.assign().empty());
        CHECK(s.complete(1, a[0].job));
        auto refill = s.assign();
        REQUIRE(refill.size() == 1);
        CHECK(refill[0].worker == 1);
        CHECK(refill[0].job == 2 * slots + 1);  // FIFO continues
    }
    Scheduler zero(0);  // 0 means 1
    zero.add_worker(1);
    zero.enqueue(1);
    zero.enqueue(2);
    CHECK(zero.assign().size() == 1);
    zero.set_slots_per_worker(2);
    CHECK(zero.assign().size() == 1);
}

TEST_CASE("scheduler: complete() rejects a job that is not on that worker", "[scheduler]") {
    Scheduler s;
    s.add_worker(1);
    s.add_worker(2);
    s.enqueue(7);
    auto a = s.assign();
    REQUIRE(a.size() == 1);
    PeerId owner = a[0].worker, other = owner == 1 ? 2 : 1;
    CHECK_FALSE(s.complete(other, 7));  // wrong worker
    CHECK_FALSE(s.complete(owner, 8));  // never submitted
    CHECK(s.complete(owner, 7));
    CHECK_FALSE(s.complete(owner, 7));  // duplicate result
    CHECK_FALSE(s.worker_of(7).has_value());
}

TEST_CASE("scheduler: remove_worker requeues its jobs at the front, oldest first",
          "[scheduler]") {
    Scheduler s(3);
    s.add_worker(1);
    s.enqueue(1);
    s.enqueue(2);
    s.enqueue(3);
    REQUIRE(s.assign().size() == 3);  // all on worker 1
    s.enqueue(4);
    s.enqueue(5);

    auto orphans = s.remove_worker(1);
    CHECK(orphans == std::vector<JobId>{1, 2, 3});
    CHECK_FALSE(s.has_worker(1));
    CHECK(s.running() == 0);
    CHECK(s.pending() == 5);
    CHECK_FALSE(s.worker_of(2).has_value());
    CHECK(s.remove_worker(1).empty());  // unknown worker: nothing

    s.add_worker(2);
    s.set_slots_per_worker(1);
    std::vector<JobId> order;
    for (int i = 0; i < 5; ++i) {
        auto a = s.assign();
        REQUIRE(a.size() == 1);
        CHECK(a[0].worker == 2);
        order.push_back(a[0].job);
        CHECK(s.complete(2, a[0].job));
    }
    CHECK(order == std::vector<JobId>{1, 2, 3, 4, 5});
}

TEST_CASE("scheduler: a late result from a removed worker is rejected", "[scheduler]") {
    Scheduler s;
    s.add_worker(1);
    s.enqueue(42);
    REQUIRE(s.assign().size() == 1);
    s.remove_worker(1);
    s.add_worker(2);
    auto a = s.assign();
    REQUIRE(a.size() == 1);
    CHECK(a[0].worker == 2);
    CHECK(a[0].job == 42);
    CHECK_FALSE(s.complete(1, 42));
    CHECK(s.worker_of(42) == PeerId{2});
    CHECK(s.complete(2, 42));
}

TEST_CASE("scheduler: a retiring worker finishes its jobs but gets no new ones",
          "[scheduler]") {
    Scheduler s(2);
    s.add_worker(1);
    s.add_worker(2);
    for (JobId j = 1; j <= 4; ++j) s.enqueue(j);
    REQUIRE(s.assign().size() == 4);
    CHECK(s.active_workers() == 2);

    s.retire_worker(1);
    s.retire_worker(99);  // unknown: ignored
    CHECK(s.active_workers() == 1);
    CHECK(s.has_worker(1));
    CHECK(s.idle_retiring_workers().empty());  // still busy

    for (JobId j = 5; j <= 8; ++j) s.enqueue(j);
    auto busy1 = s.in_flight(1);
    REQUIRE(busy1.size() == 2);
    CHECK(s.complete(1, busy1[0]));
    CHECK(s.idle_retiring_workers().empty());
    for (const auto& a : s.assign()) CHECK(a.worker == 2);
    CHECK(s.complete(1, busy1[1]));
    CHECK(s.idle_retiring_workers() == std::vector<PeerId>{1});
    CHECK(s.assign().empty());  // worker 2 is full, worker 1 retiring
    CHECK(s.in_flight(1).empty());
    CHECK(s.remove_worker(1).empty());
    CHECK(s.idle_retiring_workers().empty());
}

TEST_CASE("scheduler: cancel_pending removes only queued jobs", "[scheduler]") {
    Scheduler s;
    s.add_worker(1);
    for (JobId j = 1; j <= 4; ++j) s.enqueue(j);
    REQUIRE(s.assign().size() == 1);  // job 1 runs
    CHECK_FALSE(s.cancel_pending(1));  // running
    CHECK_FALSE(s.cancel_pending(77));  // unknown
    CHECK(s.cancel_pending(3));
    CHECK_FALSE(s.cancel_pending(3));
    CHECK(s.pending() == 2);
    CHECK(s.complete(1, 1));
    std::vector<JobId> order;
    for (auto a = s.assign(); !a.empty(); a = s.assign()) {
        order.push_back(a[0].job);
        CHECK(s.complete(1, a[0].job));
    }
    CHECK(order == std::vector<JobId>{2, 4});
}

TEST_CASE("scheduler: a worker added twice is an internal error", "[scheduler]") {
    Scheduler s;
    s.add_worker(3);
    CHECK_THROWS_AS(s.add_worker(3), InternalError);
}

TEST_CASE("scheduler: a job to run alone waits for an idle worker and keeps it to itself",
          "[scheduler]") {
    Scheduler s(4);
    s.add_worker(1);
    s.add_worker(2);
    for (JobId job = 1; job <= 3; ++job) s.enqueue(job);
    s.run_alone(1);
    auto first = s.assign();
    REQUIRE(first.size() >= 2);
    CHECK(first[0].job == 1);
    PeerId lonely = first[0].worker;
    CHECK(s.in_flight(lonely) == std::vector<JobId>{1});  // nothing else next to it
    for (JobId job = 4; job <= 6; ++job) s.enqueue(job);
    for (const auto& a : s.assign()) CHECK(a.worker != lonely);
    CHECK(s.in_flight(lonely) == std::vector<JobId>{1});
    CHECK(s.complete(lonely, 1));
    CHECK_FALSE(s.assign().empty());  // the worker takes ordinary jobs again
}

TEST_CASE("pipeline_depth: deep for short jobs, two for long ones and before any is known",
          "[scheduler]") {
    CHECK(pipeline_depth(-1.0, 64) == 2);
    CHECK(pipeline_depth(-1.0, 1) == 1);
    CHECK(pipeline_depth(0.0, 64) == 64);
    CHECK(pipeline_depth(1e-5, 64) == 64);
    CHECK(pipeline_depth(0.001, 64) == 6);  // 1 + kPipelineBudgetSeconds of queued jobs
    CHECK(pipeline_depth(0.2, 64) == 2);    // the next one waits on the worker, no round trip
    CHECK(pipeline_depth(0.2, 1) == 1);
    CHECK(pipeline_depth(1e-5, 1) == 1);
}

TEST_CASE("scheduler: with set_deep_queue, a short queue is spread, not pipelined",
          "[scheduler]") {
    Scheduler s(8);
    s.set_deep_queue(4);
    for (PeerId w = 1; w <= 3; ++w) s.add_worker(w);
    s.enqueue(1);
    s.enqueue(2);  // fewer than the workers: one each, on two of them
    CHECK(s.assign().size() == 2);
    CHECK(s.in_flight(3).empty());
    for (JobId job = 3; job <= 7; ++job) s.enqueue(job);  // 5 waiting, one per worker or more:
    auto a = s.assign();                                   // each takes one behind its own
    CHECK(a.size() == 4);
    for (PeerId w = 1; w <= 3; ++w) CHECK(s.in_flight(w).size() <= 2);
    CHECK(s.pending() == 1);
    for (JobId job = 8; job <= 20; ++job) s.enqueue(job);  // 14 waiting: deep (4 per worker)
    CHECK(s.assign().size() == 14);
    for (PeerId w = 1; w <= 3; ++w) CHECK(s.in_flight(w).size() <= 8);
}

TEST_CASE("scheduler: with every worker busy, a short queue waits one job behind each running "
          "one, the longest busy first",
          "[scheduler]") {
    Scheduler s(8);
    s.set_deep_queue(4);
    for (PeerId w = 1; w <= 3; ++w) s.add_worker(w);
    for (JobId job = 1; job <= 3; ++job) s.enqueue(job);
    CHECK(s.assign().size() == 3);  // one each
    s.enqueue(4);
    s.enqueue(5);  // fewer than the workers, none of them idle
    auto a = s.assign();
    REQUIRE(a.size() == 2);
    CHECK(a[0].worker == 1);  // busy the longest
    CHECK(a[1].worker == 2);
    CHECK(s.in_flight(3).size() == 1);
    s.enqueue(6);
    s.enqueue(7);
    CHECK(s.assign().size() == 1);  // worker 3 takes one; the others hold two already
    CHECK(s.pending() == 1);
    for (PeerId w = 1; w <= 3; ++w) CHECK(s.in_flight(w).size() == 2);
}

TEST_CASE("workers_worth_engaging: few for short jobs, no limit before any is known",
          "[scheduler]") {
    CHECK(workers_worth_engaging(-1.0) == 0);
    CHECK(workers_worth_engaging(0.0) == 4);       // each worker's own 40 us per job
    CHECK(workers_worth_engaging(100e-6) == 14);   // (100 + 40) / 10
    CHECK(workers_worth_engaging(0.1) == 10'004);  // long jobs: as many as there are
}

TEST_CASE("scheduler: an idle worker is engaged only below the engaged limit", "[scheduler]") {
    Scheduler s(8);
    s.set_engaged_limit(2);
    for (PeerId w = 1; w <= 4; ++w) s.add_worker(w);
    for (JobId job = 1; job <= 12; ++job) s.enqueue(job);
    auto load = load_of(s.assign());
    CHECK(load.size() == 2);  // two workers, both full: 16 slots for 12 jobs
    CHECK(load[1] + load[2] == 12);
    CHECK(s.in_flight(3).empty());
    CHECK(s.in_flight(4).empty());
}

TEST_CASE("scheduler: when the engaged limit falls, workers drain until it holds, and only "
          "those still busy are topped up",
          "[scheduler]") {
    Scheduler s(4);
    for (PeerId w = 1; w <= 4; ++w) s.add_worker(w);
    for (JobId job = 1; job <= 16; ++job) s.enqueue(job);
    REQUIRE(s.assign().size() == 16);  // no limit: all four engaged, four jobs each
    for (JobId job = 17; job <= 40; ++job) s.enqueue(job);
    s.set_engaged_limit(2);  // jobs turned out short
    for (PeerId w : {1, 2})
        for (JobId job : s.in_flight(w)) CHECK(s.complete(w, job));
    CHECK(s.assign().empty());  // 1 and 2 idle, 3 and 4 still at the limit: none engaged anew
    JobId three = s.in_flight(3).front();
    CHECK(s.complete(3, three));
    CHECK(s.complete(4, s.in_flight(4).front()));
    auto load = load_of(s.assign());  // the busy ones get their free slots back; 1 and 2 none
    CHECK(load.size() == 2);
    CHECK(load[3] == 1);
    CHECK(load[4] == 1);
    for (JobId job : s.in_flight(4)) CHECK(s.complete(4, job));
    s.set_engaged_limit(1);
    for (JobId job = 41; job <= 44; ++job) s.enqueue(job);
    CHECK(s.in_flight(3).size() == 4);
    CHECK(s.complete(3, s.in_flight(3).front()));
    CHECK(load_of(s.assign()) == std::map<PeerId, std::size_t>{{3, 1}});  // not 4, now idle
}

TEST_CASE("scheduler: more workers busy than the engaged limit get nothing until they drain",
          "[scheduler]") {
    Scheduler s(4);
    for (PeerId w = 1; w <= 3; ++w) s.add_worker(w);
    for (JobId job = 1; job <= 12; ++job) s.enqueue(job);
    REQUIRE(s.assign().size() == 12);
    s.set_engaged_limit(1);
    for (JobId job = 13; job <= 20; ++job) s.enqueue(job);
    for (PeerId w = 1; w <= 3; ++w) CHECK(s.complete(w, s.in_flight(w).front()));
    CHECK(s.assign().empty());  // three busy, limit one: no top-up
    for (PeerId w : {1, 2})
        for (JobId job : s.in_flight(w)) CHECK(s.complete(w, job));
    CHECK(load_of(s.assign()) == std::map<PeerId, std::size_t>{{3, 1}});
}
