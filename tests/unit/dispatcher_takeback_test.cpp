// Taking a waiting job back for an idle worker (protocol step 4, Withdraw), with puppet workers
// the test plays by hand (fault_rig.hpp).
#include <set>

#include "fault_rig.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

JobId job_of(const std::optional<Message>& m) {
    REQUIRE(m.has_value());
    return std::get<Task>(m->header).job_id;
}

// Two puppets, each given two of four jobs (one running, one waiting behind it). The second
// answers both of its jobs, reporting `seconds` each: then it has nothing to do.
struct TwoBusyWorkers {
    FaultCluster c;
    PoolId p;
    Puppet w1{c.hub, 1}, w2{c.hub, 2};
    std::vector<JobId> on_w1, on_w2;

    explicit TwoBusyWorkers(double seconds) {
        c.final_grace = 200ms;  // puppets do not answer the final Shutdown
        c.launcher.puppets = true;
        p = c.pool(2, 4);
        w1.hello();
        w2.hello();
        REQUIRE(c.await(w1, Kind::Welcome));
        REQUIRE(c.await(w2, Kind::Welcome));
        for (JobId job = 1; job <= 4; ++job) c.submit(p, job, "f", "F", "a");
        for (int i = 0; i < 2; ++i) {
            on_w1.push_back(job_of(c.await(w1, Kind::Task)));
            on_w2.push_back(job_of(c.await(w2, Kind::Task)));
        }
        for (JobId job : on_w2) w2.send({{Result{job, ResultStatus::Ok, seconds}, "r"}});
        REQUIRE(
            c.run_until([&] { return c.jobs->is_done(on_w2[0]) && c.jobs->is_done(on_w2[1]); }));
    }
};

}  // namespace

TEST_CASE("take-back: a job waiting behind another is asked back for an idle worker and runs "
          "there",
          "[dispatcher][takeback]") {
    TwoBusyWorkers t(0.5);
    auto asked = t.c.await(t.w1, Kind::Withdraw);
    REQUIRE(asked);
    JobId waiting = std::get<Withdraw>(asked->header).job_id;
    CHECK(waiting == t.on_w1[1]);  // the one behind, not the running one
    t.w1.send({{Result{waiting, ResultStatus::Withdrawn, 0.0}, {}}});
    CHECK(job_of(t.c.await(t.w2, Kind::Task)) == waiting);
    t.w2.send({{Result{waiting, ResultStatus::Ok, 0.5}, "on w2"}});
    t.w1.send({{Result{t.on_w1[0], ResultStatus::Ok, 0.5}, "on w1"}});
    REQUIRE(t.c.all_done());
    auto moved = t.c.jobs->take(waiting);
    REQUIRE(moved);
    CHECK(moved->payload == "on w2");
    CHECK(moved->worker == label(2));
    CHECK(t.c.dispatcher.stats(t.p).jobs_requeued == 0);  // not a fault
    CHECK(t.c.dispatcher.stats(t.p).jobs_taken_back == 1);
}

TEST_CASE("take-back: a job that had started when asked back ends with its own result",
          "[dispatcher][takeback]") {
    TwoBusyWorkers t(0.5);
    auto asked = t.c.await(t.w1, Kind::Withdraw);
    REQUIRE(asked);
    JobId waiting = std::get<Withdraw>(asked->header).job_id;
    t.w1.send({{Result{t.on_w1[0], ResultStatus::Ok, 0.5}, "first"},
               {Result{waiting, ResultStatus::Ok, 0.5}, "second"}});
    REQUIRE(t.c.all_done());
    CHECK(t.c.jobs->take(waiting)->payload == "second");
    t.c.run_for(50ms);
    CHECK_FALSE(t.w2.take(Kind::Task).has_value());
    t.c.submit(t.p, 5, "f", "F", "a");  // and the pool goes on as usual
    REQUIRE(t.c.run_until([&] { return t.w1.poll() + t.w2.poll() > 0 &&
                                       (t.w1.take(Kind::Task) || t.w2.take(Kind::Task)); }));
}

TEST_CASE("take-back: nothing is asked back from behind a job that started just now",
          "[dispatcher][takeback]") {
    TwoBusyWorkers t(1e-4);  // jobs of 0.1 ms: w1's running one started at the last step
    t.c.step();
    CHECK_FALSE(t.w1.take(Kind::Withdraw).has_value());
    t.c.jump(10ms);  // but once it has run longer than a take-back takes
    CHECK(t.c.await(t.w1, Kind::Withdraw).has_value());
}

// Eight puppets that ran 64 jobs of 1 us: the pool has learnt short jobs and engages few
// workers, with deep queues.
struct AfterShortJobs {
    FaultCluster c;
    PoolId p;
    std::vector<std::unique_ptr<Puppet>> w;
    std::set<PeerId> engaged;  // puppets given a task since the short jobs

    AfterShortJobs() {
        c.final_grace = 200ms;  // puppets do not answer the final Shutdown
        c.launcher.puppets = true;
        p = c.pool(8, 16);
        for (PeerId peer = 1; peer <= 8; ++peer) {
            w.push_back(std::make_unique<Puppet>(c.hub, peer));
            w.back()->hello();
        }
        for (auto& puppet : w) REQUIRE(c.await(*puppet, Kind::Welcome));
        for (JobId job = 1; job <= 64; ++job) c.submit(p, job, "f", "F", "a");
        REQUIRE(c.run_until([&] {
            answer(1e-6);
            return c.dispatcher.stats(p).pending + c.dispatcher.stats(p).running == 0;
        }));
        engaged.clear();
    }
    // Every task answered as a job of `seconds`, except those of puppet `held` (0: none).
    void answer(double seconds, PeerId held = 0) {
        for (auto& puppet : w) {
            if (puppet->peer == held) continue;
            while (auto task = puppet->take(Kind::Task)) {
                engaged.insert(puppet->peer);
                puppet->send({{Result{job_of(task), ResultStatus::Ok, seconds}, "r"}});
            }
        }
    }
    void note_tasks() {
        for (auto& puppet : w)
            while (puppet->take(Kind::Task)) engaged.insert(puppet->peer);
    }
};

// Long jobs that follow must reach the idle workers once the running ones have outlasted the
// short jobs' time, before any of their results comes (Pool::notice_long_runs).
TEST_CASE("balance: long jobs after short ones reach every worker before the first result",
          "[dispatcher][takeback]") {
    AfterShortJobs t;
    for (JobId job = 100; job < 300; ++job) t.c.submit(t.p, job, "f", "F", "a");  // long ones
    for (int i = 0; i < 3; ++i) t.c.step();  // well within the 5 ms that make a job long
    t.note_tasks();
    CHECK(t.engaged.size() < 8);  // few engaged, as for 1 us jobs
    t.c.jump(10ms);               // the running ones have outlasted that by far
    for (int i = 0; i < 3; ++i) t.c.step();
    t.note_tasks();
    CHECK(t.engaged.size() == 8);
}

// On a crowded host a short job can look long: its worker waits for a CPU. While results
// still come from the others, that is not taken for long jobs, which would engage every worker.
TEST_CASE("balance: one late worker among short jobs, results still flowing, engages no more",
          "[dispatcher][takeback]") {
    AfterShortJobs t;
    JobId next = 100;
    PeerId late = 0;  // none in the first step; then one of those engaged never answers
    for (int i = 0; i < 40; ++i) {  // 40 ms: its job has run 8 times as long as a long one
        for (int j = 0; j < 20; ++j) t.c.submit(t.p, next++, "f", "F", "a");
        for (int k = 0; k < 30; ++k) t.c.step();  // one result read per step: all of them
        t.c.jump(1ms);
        t.answer(1e-6, late);
        REQUIRE_FALSE(t.engaged.empty());
        if (late == 0) late = *t.engaged.begin();
    }
    CHECK(t.engaged.size() < 7);
    CHECK(t.c.dispatcher.stats(t.p).running > 0);  // the late one's: it never answered
}
