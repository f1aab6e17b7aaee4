// job_table.hpp: job outcomes, waits, notifications (pp callbacks) and forgotten jobs.
#include <catch2/catch.hpp>

#include <future>
#include <thread>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/job_table.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

namespace {

JobOutcome ok(Bytes payload) {
    JobOutcome o;
    o.outcome = Outcome::Ok;
    o.payload = std::move(payload);
    o.worker = "host:1";
    o.seconds = 0.5;
    return o;
}

// Finishes `id` from another thread after a short delay.
std::future<bool> finish_later(JobTable& table, JobId id, std::chrono::milliseconds delay) {
    return std::async(std::launch::async, [&table, id, delay] {
        std::this_thread::sleep_for(delay);
        return table.finish(id, ok("late"));
    });
}

}  // namespace

TEST_CASE("job table: create, finish, take", "[job_table]") {
    JobTable t;
    CHECK(t.create(1, 0, false) == 1);
    CHECK(t.unfinished() == 1);
    CHECK_FALSE(t.is_done(1));
    CHECK_FALSE(t.take(1).has_value());  // not done: nothing to take, job stays
    CHECK(t.finish(1, ok(Bytes("r\0s", 3))));
    CHECK(t.is_done(1));
    CHECK(t.unfinished() == 0);

    auto outcome = t.take(1);
    REQUIRE(outcome.has_value());
    CHECK(outcome->outcome == Outcome::Ok);
    CHECK(outcome->payload == Bytes("r\0s", 3));
    CHECK(outcome->worker == "host:1");
    CHECK(outcome->seconds == 0.5);

    // take() forgot the job.
    CHECK_THROWS_AS(t.take(1), UnknownJobError);
    CHECK_THROWS_AS(t.is_done(1), UnknownJobError);
    CHECK_THROWS_AS(t.wait(1, 0s), UnknownJobError);
    CHECK_FALSE(t.finish(1, ok("again")));
}

TEST_CASE("job table: unknown ids and duplicates", "[job_table]") {
    JobTable t;
    CHECK_THROWS_AS(t.take(5), UnknownJobError);
    CHECK_THROWS_AS(t.is_done(5), UnknownJobError);
    CHECK_FALSE(t.finish(5, ok("x")));
    t.create(5, 0, false);
    CHECK_THROWS_AS(t.create(5, 0, false), InternalError);
    CHECK(t.finish(5, ok("first")));
    CHECK_FALSE(t.finish(5, ok("second")));  // late duplicate: first outcome kept
    CHECK(t.take(5)->payload == "first");
}

TEST_CASE("job table: wait times out, then sees a finish from another thread",
          "[job_table]") {
    JobTable t;
    t.create(1, 0, false);
    CHECK_FALSE(t.wait(1, 20ms));
    auto finisher = finish_later(t, 1, 30ms);
    CHECK(t.wait(1, 10s));
    CHECK(finisher.get());
    CHECK(t.wait(1, 0s));  // already done: immediate
}

TEST_CASE("job table: notify jobs count as finished only after mark_notified",
          "[job_table]") {
    JobTable t;
    t.create(1, 0, true);
    t.create(2, 0, false);
    t.create(3, 0, true);
    CHECK(t.next_notifications(10ms).empty());

    CHECK(t.finish(1, ok("a")));
    CHECK(t.finish(2, ok("b")));
    CHECK(t.is_done(1));
    CHECK(t.unfinished(0) == 2);  // job 1 waits for its callback, job 2 is finished, 3 runs
    CHECK_FALSE(t.wait_group(0, 10ms));

    CHECK(t.next_notifications(1s) == std::vector<JobId>{1});
    CHECK(t.next_notifications(10ms).empty());  // each notification is handed out once
    t.mark_notified(1);
    CHECK(t.unfinished(0) == 1);  // job 3 still running

    t.finish(3, ok("c"));
    CHECK(t.next_notifications(1s) == std::vector<JobId>{3});
    CHECK_FALSE(t.wait_group(0, 10ms));
    t.mark_notified(3);
    CHECK(t.wait_group(0, 0s));
    CHECK(t.take(1)->payload == "a");
    CHECK(t.take(3)->payload == "c");
}

TEST_CASE("job table: next_notifications wakes up on a finish", "[job_table]") {
    JobTable t;
    t.create(9, 0, true);
    auto finisher = finish_later(t, 9, 30ms);
    CHECK(t.next_notifications(10s) == std::vector<JobId>{9});
    CHECK(finisher.get());
}

TEST_CASE("job table: wait_group per group and for all groups", "[job_table]") {
    JobTable t;
    t.create(1, 1, false);
    t.create(2, 1, false);
    t.create(3, 2, false);
    CHECK(t.unfinished() == 3);
    CHECK(t.unfinished(1) == 2);
    CHECK(t.unfinished(2) == 1);
    CHECK(t.unfinished(7) == 0);
    CHECK(t.wait_group(7, 0s));  // a group without jobs

    t.finish(3, ok("x"));
    CHECK(t.wait_group(2, 0s));
    CHECK_FALSE(t.wait_group(1, 10ms));
    CHECK_FALSE(t.wait_group(-1, 10ms));

    t.finish(1, ok("x"));
    auto finisher = finish_later(t, 2, 30ms);
    CHECK(t.wait_group(-1, 10s));
    CHECK(finisher.get());
    CHECK(t.wait_group(1, 0s));
    CHECK(t.unfinished() == 0);
}

TEST_CASE("job table: fail_unfinished fails only jobs not yet done", "[job_table]") {
    JobTable t;
    t.create(1, 0, false);
    t.create(2, 0, false);
    t.create(3, 0, true);
    t.finish(1, ok("done"));
    CHECK(t.fail_unfinished(Outcome::Destroyed, "gone") == 2);
    CHECK(t.unfinished() == 0);  // a notify job that never completed needs no callback
    CHECK(t.wait_group(-1, 0s));

    CHECK(t.take(1)->outcome == Outcome::Ok);
    for (JobId id : {2, 3}) {
        auto o = t.take(id);
        REQUIRE(o.has_value());
        CHECK(o->outcome == Outcome::Destroyed);
        CHECK(o->message == "gone");
        CHECK(o->payload.empty());
    }
    CHECK(t.fail_unfinished(Outcome::Destroyed, "again") == 0);
}

TEST_CASE("job table: a forgotten job counts until it finishes, then is dropped",
          "[job_table]") {
    JobTable t;
    t.create(1, 4, false);
    t.create(2, 4, false);
    t.forget(1);
    CHECK(t.unfinished(4) == 2);
    CHECK_FALSE(t.wait_group(4, 10ms));
    CHECK_FALSE(t.is_done(1));  // still known while running

    CHECK(t.finish(1, ok("nobody wants this")));
    CHECK(t.unfinished(4) == 1);
    CHECK_THROWS_AS(t.take(1), UnknownJobError);  // dropped once finished
    CHECK_FALSE(t.finish(1, ok("late")));

    t.finish(2, ok("x"));
    t.forget(2);  // done and finished: dropped at once
    CHECK_THROWS_AS(t.is_done(2), UnknownJobError);
    CHECK(t.wait_group(4, 0s));
    t.forget(12345);  // unknown: harmless
}

TEST_CASE("job table: forgotten notify jobs", "[job_table]") {
    JobTable t;
    t.create(1, 0, true);
    t.create(2, 0, true);
    t.forget(1);  // forgotten before done: no callback will run, no notification
    t.finish(1, ok("x"));
    CHECK(t.unfinished() == 1);
    CHECK_THROWS_AS(t.take(1), UnknownJobError);

    t.finish(2, ok("y"));
    t.forget(2);  // done, callback pending: counts until mark_notified
    CHECK(t.next_notifications(1s) == std::vector<JobId>{2});
    CHECK(t.unfinished() == 1);
    t.mark_notified(2);
    CHECK(t.unfinished() == 0);
    CHECK_THROWS_AS(t.take(2), UnknownJobError);
    t.mark_notified(2);  // unknown now: harmless
}

TEST_CASE("job table: fail_unfinished drops forgotten jobs", "[job_table]") {
    JobTable t;
    t.create(1, 0, false);
    t.forget(1);
    CHECK(t.fail_unfinished(Outcome::Destroyed, "x") == 1);
    CHECK(t.unfinished() == 0);
    CHECK_THROWS_AS(t.take(1), UnknownJobError);
}

// The callback thread takes a notify job's outcome to run its callback: wait_group must still
// wait until the callback ran (mark_notified), and only then is the job forgotten.
TEST_CASE("job table: a taken notify job finishes at mark_notified", "[job_table]") {
    JobTable t;
    t.create(1, 3, true);
    t.finish(1, ok("r"));
    CHECK(t.unfinished(3) == 1);
    CHECK(t.take(1)->payload == "r");
    CHECK(t.unfinished(3) == 1);
    CHECK_FALSE(t.wait_group(3, 0s));
    t.mark_notified(1);
    CHECK(t.unfinished(3) == 0);
    CHECK(t.wait_group(3, 0s));
    CHECK_THROWS_AS(t.take(1), UnknownJobError);
}

TEST_CASE("job table: wake_all does not fake an outcome", "[job_table]") {
    JobTable t;
    t.create(1, 0, false);
    auto waiter = std::async(std::launch::async, [&] { return t.wait(1, 200ms); });
    std::this_thread::sleep_for(10ms);
    t.wake_all();
    REQUIRE(waiter.wait_for(10s) == std::future_status::ready);
    CHECK_FALSE(waiter.get());
}

TEST_CASE("job table: a watched job is reported once done, without waiting for Python",
          "[job_table]") {
    JobTable table;
    table.create(1, 0, false);
    table.create(2, 0, false);
    CHECK(table.watch(1));
    CHECK(table.watch(1));  // twice: still reported once
    CHECK(table.next_notifications(10ms).empty());
    table.finish(1, ok("one"));
    CHECK(table.unfinished() == 1);  // finished at once: only job 2 counts
    CHECK(table.next_notifications(1s) == std::vector<JobId>{1});

    table.finish(2, ok("two"));
    CHECK(table.watch(2));  // watched after it was done: reported at once
    CHECK(table.next_notifications(1s) == std::vector<JobId>{2});
    CHECK(table.take(2)->payload == "two");
    CHECK_FALSE(table.watch(2));  // taken: unknown now
    CHECK_FALSE(table.watch(99));
    table.mark_notified(1);  // harmless for a job that never waited for it
    CHECK(table.take(1)->payload == "one");
    CHECK(table.unfinished() == 0);
}
