// WorkerHost (worker.hpp) on its own: the test thread plays the master on peer 0 and speaks
// raw frames; the worker (peer 1) runs serve() on a thread with the fake runner.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>

#include "fake_launcher.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

constexpr PeerId kWorker = 1;

class WorkerRig {
  public:
    explicit WorkerRig(bool in_world = false, WorkerOptions options = test_worker_options()) {
        auto hub = hub_;
        host_ = std::make_unique<WorkerHost>(
            [hub, in_world, this] {
                if (fail_factory) throw std::runtime_error("no MPI today");
                // Transport start-up (MPI_Init) that lasts until the job thread has prepared
                // (at most 3 s): it sees the preparation only if both run at once.
                for (int ms = 0; slow_start && ms < 3000 && !prepared_during_start; ++ms) {
                    prepared_during_start = !log->when_prepared(kWorker).empty();
                    if (!prepared_during_start) std::this_thread::sleep_for(1ms);
                }
                WorkerEnvironment env;
                env.transport = hub->endpoint(kWorker);
                env.master = 0;
                env.awaits_release = in_world;
                env.before_close = [this](bool clean) { closed_clean = clean ? 1 : 0; };
                return env;
            },
            options);
    }
    ~WorkerRig() {
        log->open_gate();
        if (!status_.valid()) return;
        if (status_.wait_for(0s) != std::future_status::ready) {
            send({{Shutdown{}, {}}, {Release{}, {}}});  // let a stuck worker go
        }
        status_.wait();
    }

    void start() {
        status_ = std::async(std::launch::async, [this] {
            FakeJobRunner runner(kWorker, log);
            return host_->serve(runner);
        });
    }
    void send(std::vector<Message> messages, PeerId from = 0) {
        auto& transport = from == 0 ? master_ : other_;
        if (!transport) transport = hub_->endpoint(from);
        transport->post(kWorker, encode_frame(messages));
    }
    void send_raw(Bytes frame) { master_->post(kWorker, std::move(frame)); }
    // Next message from the worker that is not a Heartbeat (those are kept in `heartbeats`).
    std::optional<Message> next(Clock::duration limit = 5s) {
        auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            if (!inbox_.empty()) {
                Message m = std::move(inbox_.front());
                inbox_.erase(inbox_.begin());
                return m;
            }
            if (auto env = master_->poll()) {
                REQUIRE(env->peer == kWorker);
                for (Message& m : decode_frame(env->frame)) {
                    if (auto* hb = std::get_if<Heartbeat>(&m.header)) heartbeats.push_back(*hb);
                    else inbox_.push_back(std::move(m));
                }
            } else {
                std::this_thread::sleep_for(100us);
            }
        }
        return std::nullopt;
    }
    Message expect(Kind kind) {
        auto m = next();
        REQUIRE(m.has_value());
        REQUIRE(kind_name(kind_of(m->header)) == std::string(kind_name(kind)));
        return std::move(*m);
    }
    // Waits up to `limit` for serve() to return; nullopt if it did not.
    std::optional<int> exit_status(Clock::duration limit = 5s) {
        if (status_.wait_for(limit) != std::future_status::ready) return std::nullopt;
        return status_.get();
    }
    Message welcome(std::int32_t heartbeat_ms = 500, std::int32_t timeout_ms = 5000,
                    std::int64_t master_pid = ::getpid()) {
        Welcome w;
        w.worker_id = kWorker;
        w.master_pid = master_pid;
        w.master_host = host_name();
        w.sys_path = {"/a", "/b"};
        w.cwd = "/tmp";
        w.heartbeat_ms = heartbeat_ms;
        w.master_timeout_ms = timeout_ms;
        return {w, {}};
    }
    // Start, read the Hello, welcome.
    void handshake(std::int32_t heartbeat_ms = 500, std::int32_t timeout_ms = 5000) {
        start();
        expect(Kind::Hello);
        send({welcome(heartbeat_ms, timeout_ms)});
    }

    std::shared_ptr<JobRunnerLog> log = std::make_shared<JobRunnerLog>();
    std::vector<Heartbeat> heartbeats;
    std::atomic<int> closed_clean{-1};
    std::atomic<bool> fail_factory{false};
    std::atomic<bool> slow_start{false};
    std::atomic<bool> prepared_during_start{false};

  private:
    std::shared_ptr<LoopbackHub> hub_ = LoopbackHub::create();
    std::unique_ptr<Transport> master_ = hub_->endpoint(0);
    std::unique_ptr<Transport> other_;
    std::vector<Message> inbox_;
    std::unique_ptr<WorkerHost> host_;
    std::future<int> status_;
};

Result expect_result(WorkerRig& rig, JobId job, Bytes payload) {
    Message m = rig.expect(Kind::Result);
    auto r = std::get<Result>(m.header);
    CHECK(r.job_id == job);
    CHECK(m.payload == payload);
    return r;
}

pid_t dead_pid() {
    pid_t child = fork();
    if (child == 0) _exit(0);
    REQUIRE(child > 0);
    int status = 0;
    REQUIRE(waitpid(child, &status, 0) == child);
    return child;
}

}  // namespace

TEST_CASE("worker: Hello, Welcome, FunctionDef, Task, Result, Shutdown, Goodbye", "[worker]") {
    WorkerRig rig;
    rig.start();
    auto hello = std::get<Hello>(rig.expect(Kind::Hello).header);
    CHECK(hello.pid == ::getpid());
    CHECK(hello.host == host_name());

    rig.send({rig.welcome(), {FunctionDef{"f"}, "BUN"}, {Task{11, "f"}, "abc"},
              {Task{12, "f"}, Bytes("\0z", 2)}});
    auto r = expect_result(rig, 11, "BUN:cba");
    CHECK(r.status == ResultStatus::Ok);
    CHECK(r.seconds == 0.25);
    expect_result(rig, 12, Bytes("BUN:z\0", 6));

    auto welcomes = rig.log->welcomes();
    REQUIRE(welcomes.count(kWorker) == 1);
    CHECK(welcomes[kWorker].sys_path == std::vector<std::string>{"/a", "/b"});
    CHECK(welcomes[kWorker].cwd == "/tmp");
    CHECK(rig.log->defines()[kWorker] == std::vector<std::string>{"f"});

    rig.send({{Shutdown{}, {}}});
    rig.expect(Kind::Goodbye);
    CHECK(rig.exit_status() == 0);
    CHECK(rig.closed_clean == 1);
}

// A Python worker imports and exercises its job runner (~3 ms) while MPI starts (~0.25 s),
// not after the Welcome, when the master may already be waiting for its first result.
TEST_CASE("worker: the job thread prepares while the transport is still starting", "[worker]") {
    WorkerRig rig;
    rig.slow_start = true;
    rig.handshake();
    CHECK(rig.prepared_during_start);
    rig.send({{FunctionDef{"f"}, "B"}, {Task{1, "f"}, "x"}});
    CHECK(expect_result(rig, 1, "B:x").status == ResultStatus::Ok);
    CHECK(rig.log->when_prepared(kWorker) == "before configure");
    rig.send({{Shutdown{}, {}}});
    rig.expect(Kind::Goodbye);
    CHECK(rig.exit_status() == 0);
}

TEST_CASE("worker: tasks run in arrival order, errors are results", "[worker]") {
    WorkerRig rig;
    rig.handshake();
    rig.send({{FunctionDef{"f"}, "F"}, {FunctionDef{"bad"}, "X"}});
    rig.send({{Task{1, "f"}, "1"}, {Task{2, "bad"}, "2"}, {Task{3, "nodef"}, "3"}});
    rig.send({{Task{4, "f"}, "4"}});
    expect_result(rig, 1, "F:1");
    auto bad = expect_result(rig, 2, "boom:2");
    CHECK(bad.status == ResultStatus::Error);
    CHECK(expect_result(rig, 3, "undefined nodef").status == ResultStatus::Error);
    expect_result(rig, 4, "F:4");
}

TEST_CASE("worker: heartbeats count the jobs done", "[worker]") {
    WorkerRig rig;
    rig.handshake(10);
    rig.send({{FunctionDef{"f"}, "F"}, {Task{1, "f"}, "a"}, {Task{2, "f"}, "b"}});
    expect_result(rig, 1, "F:a");
    expect_result(rig, 2, "F:b");
    auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline &&
           (rig.heartbeats.empty() || rig.heartbeats.back().jobs_done < 2)) {
        rig.next(20ms);
    }
    REQUIRE_FALSE(rig.heartbeats.empty());
    CHECK(rig.heartbeats.back().jobs_done == 2);
    CHECK(rig.heartbeats.front().jobs_done <= rig.heartbeats.back().jobs_done);
}

TEST_CASE("worker: Shutdown before Welcome still says Goodbye", "[worker]") {
    WorkerRig rig;
    rig.start();
    rig.expect(Kind::Hello);
    rig.send({{Shutdown{}, {}}});
    rig.expect(Kind::Goodbye);
    CHECK(rig.exit_status() == 0);
    CHECK(rig.log->welcomes().empty());
}

TEST_CASE("worker: queued tasks are dropped at Shutdown", "[worker]") {
    WorkerRig rig;
    rig.handshake();
    rig.send({{FunctionDef{"slow"}, "S"}, {Task{1, "slow"}, "a"}, {Task{2, "slow"}, "b"}});
    auto deadline = Clock::now() + 5s;
    while (rig.log->in_gate() < 1 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    REQUIRE(rig.log->in_gate() == 1);
    rig.send({{Shutdown{}, {}}});
    rig.expect(Kind::Goodbye);
    rig.log->open_gate();
    CHECK(rig.exit_status() == 0);
    CHECK(rig.log->in_gate() == 1);  // task 2 never ran
    CHECK_FALSE(rig.next(50ms).has_value());  // and task 1's result was not sent
}

TEST_CASE("worker: a task asked back before it started comes back Withdrawn; a running one "
          "ends as usual",
          "[worker]") {
    WorkerRig rig;
    rig.handshake();
    rig.send({{FunctionDef{"slow"}, "S"}, {Task{1, "slow"}, "a"}, {Task{2, "slow"}, "b"}});
    auto deadline = Clock::now() + 5s;
    while (rig.log->in_gate() < 1 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    REQUIRE(rig.log->in_gate() == 1);  // task 1 runs, task 2 waits
    rig.send({{Withdraw{2}, {}}, {Withdraw{1}, {}}, {Withdraw{99}, {}}});
    Message back = rig.expect(Kind::Result);
    CHECK(std::get<Result>(back.header).job_id == 2);
    CHECK(std::get<Result>(back.header).status == ResultStatus::Withdrawn);
    rig.log->open_gate();
    Result done = expect_result(rig, 1, "S:a");
    CHECK(done.status == ResultStatus::Ok);
    CHECK_FALSE(rig.next(100ms).has_value());  // nothing about 1 or 99, and 2 never ran
    CHECK(rig.log->in_gate() == 1);
}

TEST_CASE("worker: in the master's world it waits for Release", "[worker]") {
    WorkerRig rig(true);
    rig.handshake();
    rig.send({{Shutdown{}, {}}});
    rig.expect(Kind::Goodbye);
    CHECK_FALSE(rig.exit_status(100ms).has_value());
    rig.send({{Heartbeat{}, {}}, {Release{}, {}}});
    CHECK(rig.exit_status() == 0);
    CHECK(rig.closed_clean == 1);
}

TEST_CASE("worker: frames from other peers and malformed frames are ignored", "[worker]") {
    WorkerRig rig;
    rig.handshake();
    rig.send({{Shutdown{}, {}}}, 7);  // not the master
    CHECK_FALSE(rig.next(50ms).has_value());
    CHECK_FALSE(rig.exit_status(0s).has_value());
    rig.send_raw(Bytes("\x01\0\0\0\xff\xff", 6));  // malformed: logged and dropped
    rig.send({});                                     // an empty frame is fine too
    rig.send({{FunctionDef{"f"}, "F"}});
    rig.send({{Task{5, "f"}, "q"}});
    expect_result(rig, 5, "F:q");
    CHECK_FALSE(rig.exit_status(0s).has_value());
}

TEST_CASE("worker: a master that goes silent ends the worker", "[worker]") {
    WorkerRig rig;
    rig.handshake(500, 200);
    auto start = Clock::now();
    CHECK(rig.exit_status(5s) == 1);
    CHECK(Clock::now() - start >= 150ms);
    CHECK(rig.closed_clean == 0);
}

TEST_CASE("worker: a master process that is gone ends the worker at once", "[worker]") {
    WorkerRig rig;
    rig.start();
    rig.expect(Kind::Hello);
    rig.send({rig.welcome(500, 60000, dead_pid())});
    CHECK(rig.exit_status(5s) == 1);
}

// A master that stands in: a child process of this test that only sleeps (killed at the end).
struct StandInMaster {
    pid_t pid = fork();
    StandInMaster() {
        if (pid == 0) {
            ::pause();
            _exit(0);
        }
        REQUIRE(pid > 0);
    }
    ~StandInMaster() {
        ::kill(pid, SIGKILL);
        ::waitpid(pid, nullptr, 0);
    }
};

TEST_CASE("worker: a silent master whose process runs here is starved, not gone; stopped, it is "
          "gone",
          "[worker]") {
    StandInMaster master;
    WorkerRig rig;
    rig.start();
    rig.expect(Kind::Hello);
    rig.send({rig.welcome(60000, 200, master.pid)});  // no heartbeats from the master
    CHECK_FALSE(rig.exit_status(800ms).has_value());  // 4 timeouts of silence, still serving
    REQUIRE(::kill(master.pid, SIGSTOP) == 0);
    auto stopped = Clock::now();
    CHECK(rig.exit_status(5s) == 1);
    CHECK(Clock::now() - stopped < 1s);
}

TEST_CASE("worker: no first contact from the master ends the worker", "[worker]") {
    WorkerOptions options = test_worker_options();
    options.first_contact_timeout = 200ms;
    WorkerRig rig(false, options);
    rig.start();
    rig.expect(Kind::Hello);
    CHECK(rig.exit_status(5s) == 1);
}

TEST_CASE("worker: an environment that cannot start gives status 2", "[worker]") {
    WorkerRig rig;
    rig.fail_factory = true;
    rig.start();
    CHECK(rig.exit_status(5s) == 2);
}

// A broken runner (run() throws) must end the worker with status 3, not leave it
// heartbeating with a job that never completes.
TEST_CASE("worker: a broken runner ends the worker with status 3", "[worker]") {
    WorkerRig rig;
    rig.handshake();
    rig.send({{FunctionDef{"throw"}, "T"}, {Task{1, "throw"}, "x"}});
    auto status = rig.exit_status(1500ms);
    CHECK(status.has_value());
    CHECK(status.value_or(-1) == 3);
}

// Open MPI can hang in MPI_Init for good (worker.cpp): the process must still end. It ends by
// _Exit, so the worker runs in a child process here.
TEST_CASE("worker: an MPI start that never finishes ends the process after the first-contact "
          "time-out",
          "[worker]") {
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {
        WorkerOptions options = test_worker_options();
        options.first_contact_timeout = 300ms;
        WorkerHost host([]() -> WorkerEnvironment {
            std::this_thread::sleep_for(std::chrono::hours(1)); // stands in for PMIx_Init
            return {};
        }, options);
        FakeJobRunner runner(1, std::make_shared<JobRunnerLog>());
        ::_exit(host.serve(runner) == kStuckStartStatus ? 90 : 91);  // serve never returns
    }
    int status = 0;
    pid_t done = 0;
    auto deadline = Clock::now() + 10s;
    while ((done = ::waitpid(child, &status, WNOHANG)) == 0 && Clock::now() < deadline)
        std::this_thread::sleep_for(10ms);
    if (done == 0) {
        ::kill(child, SIGKILL);
        ::waitpid(child, &status, 0);
    }
    REQUIRE(done == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == kStuckStartStatus);
}
