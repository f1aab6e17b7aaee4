// Pool (master/pool.hpp): a pool's jobs, deadlines, requeues, take-backs, job time and stats,
// with no transport, no launcher and no Dispatcher; the tests play the Dispatcher's part.
#include <catch2/catch.hpp>

#include <memory>

#include "ppmpi/link/link_transport.hpp"
#include "ppmpi/master/pool.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

namespace {

PoolSpec spec_of(std::size_t slots_per_worker, std::size_t max_retries = 3) {
    PoolSpec spec;
    spec.slots_per_worker = slots_per_worker;
    spec.deep_queue = 0;  // pipelined whatever the queue's depth: predictable assignments
    spec.max_retries = max_retries;
    return spec;
}

struct Rig {
    Pool pool;
    std::uint64_t send_order = 0;
    Clock::time_point t0 = Clock::now();

    explicit Rig(std::size_t slots_per_worker = 1, std::size_t max_retries = 3)
        : pool(spec_of(slots_per_worker, max_retries), std::make_shared<JobTable>()) {}

    void submit(JobId job, Clock::duration timeout = Clock::duration::zero()) {
        QueuedJob queued;
        queued.key = "f";
        queued.timeout = timeout;
        pool.submit(job, std::move(queued), "F");
    }
    // What Dispatcher::dispatch_jobs does, without sending: hand out, number, start the heads.
    void dispatch(Clock::time_point now) {
        auto assignments = pool.scheduler().assign();
        for (const auto& a : assignments) pool.mark_sent(a.job, ++send_order);
        for (const auto& a : assignments) pool.start_head(a.worker, now);
    }
    PeerId worker_of(JobId job) const {
        auto worker = pool.scheduler().worker_of(job);
        REQUIRE(worker);
        return *worker;
    }
};

}  // namespace

TEST_CASE("pool: a worker's head job is its first sent, started once", "[pool]") {
    Rig r(2);
    r.pool.scheduler().add_worker(1);
    r.submit(10);
    r.submit(11);
    REQUIRE(r.pool.scheduler().assign().size() == 2);
    r.pool.mark_sent(11, 1);  // sent first although submitted second
    r.pool.mark_sent(10, 2);
    CHECK(r.pool.head_job(1) == JobId{11});
    CHECK_FALSE(r.pool.head_job(2).has_value());  // no such worker: no head
    r.pool.start_head(1, r.t0);
    CHECK(r.pool.job(11).started);
    CHECK(r.pool.job(11).started_at == r.t0);
    CHECK_FALSE(r.pool.job(10).started);
    r.pool.start_head(1, r.t0 + 1s);  // already running: its start stays
    CHECK(r.pool.job(11).started_at == r.t0);
    CHECK(r.pool.remove_job(11) == PeerId{1});
    CHECK(r.pool.head_job(1) == JobId{10});
    r.pool.start_head(1, r.t0 + 2s);
    CHECK(r.pool.job(10).started_at == r.t0 + 2s);
}

TEST_CASE("pool: a job's record and bundle go with its outcome; children queue first", "[pool]") {
    Rig r;
    CHECK(r.pool.quiet());
    r.submit(1);
    CHECK_FALSE(r.pool.quiet());
    CHECK(r.pool.functions().contains("f"));
    CHECK_FALSE(r.pool.remove_job(1).has_value());  // it was still queued: no worker
    CHECK(r.pool.queued().empty());
    CHECK_FALSE(r.pool.functions().contains("f"));  // released with its last job
    CHECK(r.pool.quiet());

    r.submit(2);
    QueuedJob child;
    child.key = "f";
    r.pool.submit_child(3, std::move(child), /*owner=*/7, /*parent=*/2);
    REQUIRE(r.pool.children().find(3));
    CHECK(r.pool.children().find(3)->owner == 7);
    r.pool.scheduler().add_worker(1);
    auto assignments = r.pool.scheduler().assign();
    REQUIRE(assignments.size() == 1);
    CHECK(assignments[0].job == 3);  // ahead of the top-level job

    QueuedJob gang;
    gang.key = "f";
    gang.nranks = 2;
    r.pool.submit(4, std::move(gang), {});
    CHECK(r.pool.gangs().pending() == 1);
    CHECK(r.pool.scheduler().pending() == 1);  // job 2 only
    CHECK(r.pool.mark_regrouped(4));
    CHECK_FALSE(r.pool.mark_regrouped(4));  // once per job
}

TEST_CASE("pool: deadlines come due earliest first, and leave with their jobs", "[pool]") {
    Rig r;
    for (PeerId w = 1; w <= 3; ++w) r.pool.scheduler().add_worker(w);
    r.submit(1, 3s);
    r.submit(2, 1s);
    r.submit(3);                                                // no time-out
    CHECK(r.pool.next_deadline() == Clock::time_point::max());  // none started
    r.dispatch(r.t0);
    CHECK(r.pool.next_deadline() == r.t0 + 1s);
    CHECK(r.pool.past_deadline(r.t0 + 500ms).empty());
    Pool::Placed due{{2, r.worker_of(2)}};
    CHECK(r.pool.past_deadline(r.t0 + 1s) == due);  // at its deadline
    due.emplace_back(1, r.worker_of(1));
    CHECK(r.pool.past_deadline(r.t0 + 1h) == due);

    r.pool.shorten_deadline(1, r.t0 + 200ms);
    CHECK(r.pool.next_deadline() == r.t0 + 200ms);
    r.pool.shorten_deadline(1, r.t0 + 5s);  // later: no change
    CHECK(r.pool.job(1).deadline == r.t0 + 200ms);
    CHECK(r.pool.past_deadline(r.t0 + 300ms) == Pool::Placed{{1, r.worker_of(1)}});

    r.pool.remove_job(1);
    CHECK(r.pool.next_deadline() == r.t0 + 1s);
    r.pool.destroy();
    CHECK(r.pool.past_deadline(r.t0 + 1h).empty());
    CHECK(r.pool.next_deadline() == Clock::time_point::max());
}

TEST_CASE("pool: a requeued job is charged only for the loss it ran into, up to max_retries",
          "[pool]") {
    Rig r(1, /*max_retries=*/2);
    r.pool.scheduler().add_worker(1);
    r.pool.scheduler().add_worker(2);
    r.submit(1, 1s);
    r.submit(2);
    r.dispatch(r.t0);
    PeerId first = r.worker_of(1), other = r.worker_of(2);
    REQUIRE(r.pool.scheduler().remove_worker(first) == std::vector<JobId>{1});
    CHECK(r.pool.requeue(1, "h:a", JobId{1}));
    CHECK(r.pool.job(1).lost_on == std::vector<std::string>{"h:a"});
    CHECK_FALSE(r.pool.job(1).started);
    CHECK(r.pool.job(1).deadline == Clock::time_point::max());
    CHECK(r.pool.next_deadline() == Clock::time_point::max());  // job 2 has none
    CHECK(r.pool.stats().jobs_requeued == 1);
    CHECK(r.pool.scheduler().pending() == 1);

    r.pool.scheduler().add_worker(3);  // it runs alone now: on an idle worker
    r.dispatch(r.t0 + 1s);
    CHECK(r.worker_of(1) == 3);
    CHECK(r.pool.next_deadline() == r.t0 + 2s);  // counted from its new start
    r.pool.scheduler().remove_worker(3);
    CHECK_FALSE(r.pool.requeue(1, "h:c", JobId{1}));  // twice: it must fail
    CHECK(r.pool.job(1).lost_on == std::vector<std::string>{"h:a", "h:c"});
    CHECK(r.pool.stats().jobs_requeued == 1);

    REQUIRE(r.pool.scheduler().remove_worker(other) == std::vector<JobId>{2});
    CHECK(r.pool.requeue(2, "h:b", std::nullopt));  // stopped, not failed: not charged
    CHECK(r.pool.job(2).lost_on.empty());
    CHECK(r.pool.stats().jobs_requeued == 2);
}

TEST_CASE("pool: a job behind a long one is taken back for an idle worker", "[pool]") {
    Rig r(2);
    r.pool.scheduler().add_worker(1);
    r.pool.scheduler().add_worker(2);
    for (JobId job = 1; job <= 3; ++job) r.submit(job);
    r.dispatch(r.t0);
    PeerId busy = r.worker_of(3);
    JobId head = *r.pool.head_job(busy);
    JobId lone = head == 1 ? 2 : 1;
    PeerId idle = r.worker_of(lone);
    REQUIRE(idle != busy);
    CHECK(r.pool.take_back_for_idle(r.t0 + 10ms).empty());  // nobody idle yet
    r.pool.remove_job(lone);
    CHECK(r.pool.take_back_for_idle(r.t0 + 1ms).empty());  // the head may end soon
    auto asked = r.pool.take_back_for_idle(r.t0 + 10ms);
    CHECK(asked == std::vector<std::pair<PeerId, JobId>>{{busy, 3}});
    CHECK(r.pool.job(3).withdrawing);
    CHECK(r.pool.take_back_for_idle(r.t0 + 20ms).empty());  // one asked for one idle worker
    CHECK_FALSE(r.pool.withdrawn(idle, head));              // never asked back
    CHECK(r.pool.withdrawn(busy, 3));
    CHECK_FALSE(r.pool.job(3).withdrawing);
    CHECK(r.pool.scheduler().pending() == 1);
    CHECK(r.pool.stats().jobs_taken_back == 1);
    CHECK_FALSE(r.pool.withdrawn(busy, 3));  // answered already
}

TEST_CASE("pool: a requeue ends a withdrawal, so the job may be asked back again", "[pool]") {
    Rig r(2);
    r.pool.scheduler().add_worker(1);
    r.submit(1);
    r.submit(2);
    r.dispatch(r.t0);
    r.pool.ask_back(2);
    r.pool.scheduler().add_worker(2);  // idle, but the one waiting job is being withdrawn
    CHECK(r.pool.take_back_for_idle(r.t0 + 1s).empty());
    auto back = r.pool.scheduler().remove_worker(1);
    for (JobId job : back) CHECK(r.pool.requeue(job, "h:1", JobId{1}));
    CHECK_FALSE(r.pool.job(2).withdrawing);
    CHECK(r.pool.job(2).lost_on.empty());      // not the job that was running
    CHECK(r.pool.job(1).lost_on.size() == 1);  // the head was
}

TEST_CASE("pool: the job time is a moving average that sets the pipeline depth", "[pool]") {
    Rig r(64);
    CHECK(r.pool.mean_job_seconds() < 0.0);
    CHECK(r.pool.scheduler().slots_per_worker() == 2);  // not known: one behind the running one
    r.pool.learn_job_time(0.001);
    CHECK(r.pool.mean_job_seconds() == Approx(0.001));
    CHECK(r.pool.scheduler().slots_per_worker() == 6);
    r.pool.learn_job_time(0.017);
    CHECK(r.pool.mean_job_seconds() == Approx(0.002));  // 1/16 of the way to the new time
    CHECK(r.pool.scheduler().slots_per_worker() == pipeline_depth(0.002, 64));
    r.pool.learn_job_time(1e-6);
    CHECK(r.pool.mean_job_seconds() == Approx(0.002 + (1e-6 - 0.002) / 16));
    for (int i = 0; i < 400; ++i) r.pool.learn_job_time(1e-6);
    CHECK(r.pool.scheduler().slots_per_worker() == 64);  // short jobs: as deep as allowed
}

TEST_CASE("pool: a long run raises the job time before its result, unless results flow", "[pool]") {
    Rig r;
    r.pool.scheduler().add_worker(1);
    r.pool.scheduler().add_worker(2);  // stays idle
    r.submit(1);
    r.dispatch(r.t0);
    r.pool.notice_long_runs(r.t0 + 1s, r.t0 + 1s);
    CHECK(r.pool.mean_job_seconds() < 0.0);  // nothing to compare with yet
    r.pool.learn_job_time(0.001);
    r.pool.notice_long_runs(r.t0 + 1s, r.t0 + 1s);
    double raised = 0.001 + (1.0 - 0.001) / 16;
    CHECK(r.pool.mean_job_seconds() == Approx(raised));
    r.pool.notice_long_runs(r.t0 + 1s + 500us, r.t0 + 1s + 500us);  // within 1 ms: not again
    CHECK(r.pool.mean_job_seconds() == Approx(raised));
    r.pool.record_result(2, "h:2", 0.001, r.t0 + 2s);
    r.pool.notice_long_runs(r.t0 + 2s + 2ms, r.t0 + 2s + 2ms);  // a result just came
    CHECK(r.pool.mean_job_seconds() == Approx(raised));
    r.pool.notice_long_runs(r.t0 + 3s, r.t0 + 2s + 3ms);  // judged as of the last drain
    CHECK(r.pool.mean_job_seconds() == Approx(raised));
}

TEST_CASE("pool: stats count its sends, results and losses, its own workers by peer", "[pool]") {
    Rig r;
    r.submit(1);
    r.pool.name_worker(2, "h:2");
    r.pool.record_result(1, "h:1", 0.5, r.t0);
    r.pool.record_result(1, "h:1", 0.25, r.t0);
    r.pool.record_result(link::LinkTransport::peer_of(0, 0), "server/slot0", 1.0, r.t0);
    for (int i = 0; i < 3; ++i) r.pool.count_task();
    r.pool.count_function_def(100);
    r.pool.count_function_def(50);
    r.pool.count_lost_worker();
    r.pool.start_failed("no slots");
    r.pool.start_failed("still no slots");
    PoolStats s = r.pool.stats();
    REQUIRE(s.per_worker.size() == 2);  // a remote server's slot: in its link's status
    CHECK(s.per_worker[0].label == "h:1");
    CHECK(s.per_worker[0].jobs == 2);
    CHECK(s.per_worker[0].seconds == Approx(0.75));
    CHECK(s.per_worker[1].label == "h:2");
    CHECK(s.per_worker[1].jobs == 0);
    CHECK(s.pending == 1);
    CHECK(s.running == 0);
    CHECK(s.tasks_sent == 3);
    CHECK(s.function_defs_sent == 2);
    CHECK(s.function_bytes_sent == 150);
    CHECK(s.workers_lost == 1);
    CHECK(s.start_failures == 2);
    CHECK(s.start_error == "still no slots");
    CHECK(r.pool.worker_stats().size() == 3);
}

TEST_CASE("pool: waiting jobs with no worker usable pass the limit after it", "[pool]") {
    Rig r;
    r.pool.staffing.no_worker_limit = 2s;
    CHECK_FALSE(r.pool.no_worker_limit_passed(r.t0));  // no job waits
    r.submit(1);
    CHECK_FALSE(r.pool.no_worker_limit_passed(r.t0));
    CHECK_FALSE(r.pool.no_worker_limit_passed(r.t0 + 1s));
    CHECK(r.pool.no_worker_limit_passed(r.t0 + 2s));
    r.pool.scheduler().add_worker(1);
    CHECK_FALSE(r.pool.no_worker_limit_passed(r.t0 + 3s));  // one is usable: counts again
    CHECK(r.pool.staffing.no_worker_since == Clock::time_point{});
}
