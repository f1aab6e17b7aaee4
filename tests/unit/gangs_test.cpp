// Gangs (core/gangs.hpp): parallel jobs on k workers of one domain; Children (children.hpp).
#include <algorithm>

#include "ppmpi/core/children.hpp"
#include "ppmpi/core/gangs.hpp"
#include "ppmpi/core/scheduler.hpp"

#include <catch2/catch.hpp>
#include <map>

using namespace ppmpi;

namespace {
struct Loads {
    std::map<PeerId, std::size_t> jobs;
    Gangs::Load fn() {
        return [this](PeerId w) { return jobs.count(w) ? jobs.at(w) : std::size_t{0}; };
    }
};
} // namespace

TEST_CASE("a parallel job is reserved the least loaded workers of one domain, then starts") {
    Gangs gangs;
    Loads loads;
    for (PeerId w = 1; w <= 4; ++w) gangs.add_worker(w, 0, static_cast<int>(w));
    gangs.add_worker(10, 1, 0);
    gangs.add_worker(11, 1, 1);
    loads.jobs = {{1, 2}, {2, 0}, {3, 1}, {4, 0}, {10, 1}, {11, 1}};
    gangs.enqueue(7, 3);
    auto held = gangs.reserve(loads.fn());
    CHECK(held == std::vector<PeerId>{2, 3, 4});  // domain 0 only has 3 free; least loaded
    CHECK(gangs.pending() == 1);
    CHECK_FALSE(gangs.start_ready(loads.fn())); // worker 3 still has a job
    loads.jobs[3] = 0;
    auto start = gangs.start_ready(loads.fn());
    REQUIRE(start);
    CHECK(start->job == 7);
    CHECK(start->members == std::vector<PeerId>{2, 3, 4});
    CHECK(start->domain_ranks == std::vector<int>{2, 3, 4});
    CHECK(gangs.running(7));
    CHECK(gangs.pending() == 0);
}

TEST_CASE("a parallel job ends once every rank answered; parts come back in rank order") {
    Gangs gangs;
    Loads loads;
    gangs.add_worker(1, 0, 5);
    gangs.add_worker(2, 0, 3);
    gangs.enqueue(9, 2);
    gangs.reserve(loads.fn());
    auto start = gangs.start_ready(loads.fn());
    REQUIRE(start);
    CHECK(start->members == std::vector<PeerId>{2, 1});  // by rank in the domain
    CHECK_FALSE(gangs.record(9, 1, GangPart{ResultStatus::Error, "e", {}, 0.5}));
    CHECK_FALSE(gangs.record(9, 1, GangPart{})); // twice: ignored
    CHECK(gangs.any_error(9));
    CHECK_FALSE(gangs.member(9, 3));
    CHECK(gangs.record(9, 2, GangPart{ResultStatus::Ok, "ok", {}, 0.1}));
    auto [members, parts] = gangs.end(9);
    REQUIRE(parts.size() == 2);
    CHECK(parts[0]->payload == "ok");
    CHECK(parts[1]->payload == "e");
    Buffers buffers;
    parts.push_back(std::nullopt);
    Bytes packed = pack_gang_parts(parts, buffers);
    CHECK(packed.substr(0, 4) == "PPG1");
    CHECK(packed.size() == 8 + 3 * 13 + 2 + 1);
    CHECK_FALSE(gangs.running(9));
}

TEST_CASE("a member lost breaks its running job; one lost from a reservation releases it") {
    Gangs gangs;
    Loads loads;
    for (PeerId w = 1; w <= 4; ++w) gangs.add_worker(w, 0, static_cast<int>(w));
    gangs.enqueue(1, 2);
    gangs.enqueue(2, 2);
    gangs.reserve(loads.fn());
    REQUIRE(gangs.start_ready(loads.fn()));
    loads.jobs = {{3, 1}};
    auto second = gangs.reserve(loads.fn());
    CHECK(second.size() == 2);
    auto broken = gangs.remove_worker(1);
    CHECK(broken.broken == std::optional<JobId>(1));
    auto released = gangs.remove_worker(second[0]);
    CHECK_FALSE(released.broken);
    CHECK(released.unhold.size() == 2); // the reservation is given up; job 2 waits again
    CHECK(gangs.pending() == 1);
    CHECK(gangs.unplaceable() == std::nullopt); // 3 left in domain 0, job 2 needs 2
}

TEST_CASE("a job bigger than every domain is reported, with the domains' sizes") {
    Gangs gangs;
    gangs.add_worker(1, 0, 1);
    gangs.add_worker(2, 3, 0);
    gangs.add_worker(3, 3, 1);
    gangs.add_worker(4, -1, 0); // a remote server's slot: in no domain
    gangs.enqueue(5, 3);
    auto unplaceable = gangs.unplaceable();
    REQUIRE(unplaceable);
    CHECK(unplaceable->second == 3);
    CHECK(gangs.describe_domains() == "1 (the mpirun world), 2");
    Loads loads;
    CHECK(gangs.to_regroup(3, loads.fn()).size() == 3);
    CHECK(gangs.drop(5).empty());
    CHECK(gangs.pending() == 0);
}

TEST_CASE("later parallel jobs wait their turn: one reservation at a time, FIFO") {
    Gangs gangs;
    Loads loads;
    for (PeerId w = 1; w <= 4; ++w) gangs.add_worker(w, 0, static_cast<int>(w));
    loads.jobs = {{1, 1}, {2, 1}, {3, 1}, {4, 1}};
    gangs.enqueue(1, 4);
    gangs.enqueue(2, 1);
    CHECK(gangs.reserve(loads.fn()).size() == 4);
    CHECK(gangs.reserve(loads.fn()).empty()); // job 2 waits behind the reservation
    loads.jobs.clear();
    REQUIRE(gangs.start_ready(loads.fn())->job == 1);
    CHECK(gangs.reserve(loads.fn()).empty()); // every worker runs job 1
    gangs.end(1);
    CHECK(gangs.reserve(loads.fn()).size() == 1);
    REQUIRE(gangs.start_ready(loads.fn())->job == 2);
}

TEST_CASE("children: owners, orphans and the worker waiting to run one") {
    Children children;
    children.add(100, 1, 7);
    children.add(101, 1, 7);
    children.add(200, 2, 8);
    REQUIRE(children.find(100));
    CHECK(children.find(100)->owner == 1);
    CHECK(children.find(100)->parent == 7);
    CHECK_FALSE(children.find(300));
    children.want_help(200, 3);
    CHECK(children.take_helper(200) == std::optional<PeerId>(3));
    CHECK_FALSE(children.take_helper(200));  // once
    auto orphans = children.orphan(1);
    std::sort(orphans.begin(), orphans.end());
    CHECK(orphans == std::vector<JobId>{100, 101});
    CHECK(children.find(101)->orphaned);
    CHECK_FALSE(children.find(200)->orphaned);
    children.erase(100);
    children.erase(101);
    children.erase(200);
    CHECK(children.size() == 0);
    CHECK(children.orphan(1).empty());
}

TEST_CASE("scheduler: a child goes ahead of the queue, or straight to the worker waiting for it") {
    Scheduler scheduler(1);
    scheduler.add_worker(1);
    scheduler.enqueue(10);
    scheduler.enqueue(11, /*front=*/true);
    auto first = scheduler.assign();
    REQUIRE(first.size() == 1);
    CHECK(first[0].job == 11);
    scheduler.enqueue(12);
    CHECK(scheduler.take_for(12, 1));  // busy (slots full), but its running job waits for 12
    CHECK(scheduler.worker_of(12) == std::optional<PeerId>(1));
    CHECK(scheduler.load(1) == 2);
    CHECK_FALSE(scheduler.take_for(12, 1));  // not queued any more
    CHECK(scheduler.complete(1, 12));
    CHECK(scheduler.complete(1, 11));
    auto rest = scheduler.assign();
    REQUIRE(rest.size() == 1);
    CHECK(rest[0].job == 10);  // 12 was taken out of the queue: skipped

    scheduler.enqueue(13);
    CHECK(scheduler.take_for(13, 1));
    CHECK(scheduler.remove_worker(1) == std::vector<JobId>{10, 13});  // requeued, once each
    scheduler.add_worker(2);
    CHECK(scheduler.cancel_pending(13));
    auto again = scheduler.assign();
    REQUIRE(again.size() == 1);
    CHECK(again[0].job == 10);
    CHECK(scheduler.assign().empty());  // no stale entry of 13 comes back to life
}
