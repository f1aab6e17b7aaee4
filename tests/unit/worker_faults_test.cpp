// WorkerHost leaving without an orderly end: Shutdown{immediate=true} and Release{finalize=
// false}. The test thread plays the master (peer 0) with raw frames; the worker is peer 1.
#include <catch2/catch.hpp>

#include <future>

#include "fake_launcher.hpp"
#include "ppmpi/core/heartbeat.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

constexpr PeerId kWorker = 1;

class LeavingRig {
  public:
    explicit LeavingRig(bool in_world) {
        auto hub = hub_;
        host_ = std::make_unique<WorkerHost>(
            [hub, in_world, this] {
                WorkerEnvironment env;
                env.transport = hub->endpoint(kWorker);
                env.awaits_release = in_world;
                env.before_close = [this](bool clean) { closed_clean = clean ? 1 : 0; };
                return env;
            },
            test_worker_options());
        status_ = std::async(std::launch::async, [this] {
            FakeJobRunner runner(kWorker, log);
            return host_->serve(runner);
        });
    }
    ~LeavingRig() {
        log->open_gate();
        if (!status_.valid()) return;  // exit_status() took it
        if (status_.wait_for(0s) != std::future_status::ready)
            send({{Shutdown{true}, {}}});  // let a stuck worker go
        status_.wait();
    }
    void send(std::vector<Message> messages) { master_->post(kWorker, encode_frame(messages)); }
    // Kinds of the messages received within `limit` (Heartbeats left out).
    std::vector<Kind> received(Clock::duration limit) {
        std::vector<Kind> kinds;
        auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            auto envelope = master_->poll();
            if (!envelope) {
                std::this_thread::sleep_for(100us);
                continue;
            }
            for (Message& m : decode_frame(envelope->frame))
                if (kind_of(m.header) != Kind::Heartbeat) kinds.push_back(kind_of(m.header));
        }
        return kinds;
    }
    std::optional<Message> next(Kind kind, Clock::duration limit = 5s) {
        auto deadline = Clock::now() + limit;
        while (Clock::now() < deadline) {
            if (auto envelope = master_->poll()) {
                for (Message& m : decode_frame(envelope->frame))
                    if (kind_of(m.header) == kind) return std::move(m);
            } else {
                std::this_thread::sleep_for(100us);
            }
        }
        return std::nullopt;
    }
    std::optional<int> exit_status(Clock::duration limit = 5s) {
        if (status_.wait_for(limit) != std::future_status::ready) return std::nullopt;
        return status_.get();
    }
    // Reads the Hello, then welcomes the worker.
    Hello handshake() {
        auto hello = next(Kind::Hello);
        REQUIRE(hello.has_value());
        Welcome w;
        w.worker_id = kWorker;
        w.master_pid = ::getpid();
        w.master_host = host_name();
        w.heartbeat_ms = 20;
        send({{w, {}}});
        return std::get<Hello>(hello->header);
    }

    std::shared_ptr<JobRunnerLog> log = std::make_shared<JobRunnerLog>();
    std::atomic<int> closed_clean{-1};

  private:
    std::shared_ptr<LoopbackHub> hub_ = LoopbackHub::create();
    std::unique_ptr<Transport> master_ = hub_->endpoint(0);
    std::unique_ptr<WorkerHost> host_;
    std::future<int> status_;
};

bool has(const std::vector<Kind>& kinds, Kind kind) {
    return std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

}  // namespace

TEST_CASE("worker: Hello carries this process's identity", "[worker][faults]") {
    LeavingRig rig(false);
    Hello hello = rig.handshake();
    ProcessIdentity self = this_process();
    CHECK(hello.pid == self.pid);
    CHECK(hello.start_ticks == self.start_ticks);
    CHECK(hello.start_ticks != 0);
    CHECK(hello.host == self.host);
    rig.send({{Shutdown{}, {}}});
    CHECK(rig.next(Kind::Goodbye).has_value());
    CHECK(rig.exit_status() == 0);
}

TEST_CASE("worker: Shutdown{immediate} leaves at once without Goodbye", "[worker][faults]") {
    LeavingRig rig(false);
    rig.handshake();
    rig.send({{FunctionDef{"f"}, "F"}, {Task{1, "f"}, "a"}});
    REQUIRE(rig.next(Kind::Result).has_value());
    rig.send({{Shutdown{true}, {}}});
    CHECK(rig.exit_status(2s) == 0);
    CHECK(rig.closed_clean == 0);  // no disconnect, no finalize
    CHECK_FALSE(has(rig.received(50ms), Kind::Goodbye));
}

TEST_CASE("worker: Shutdown{immediate} during a job drops it and its result",
          "[worker][faults]") {
    LeavingRig rig(false);
    rig.handshake();
    rig.send({{FunctionDef{"slow"}, "S"}, {Task{1, "slow"}, "a"}, {Task{2, "slow"}, "b"}});
    auto deadline = Clock::now() + 5s;
    while (rig.log->in_gate() < 1 && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    REQUIRE(rig.log->in_gate() == 1);
    rig.send({{Shutdown{true}, {}}});
    CHECK_FALSE(rig.exit_status(100ms).has_value());  // job 1 still runs: its grace period
    rig.log->open_gate();
    CHECK(rig.exit_status(2s) == 0);
    CHECK(rig.closed_clean == 0);
    CHECK(rig.log->in_gate() == 1);  // job 2 never ran
    auto kinds = rig.received(50ms);
    CHECK_FALSE(has(kinds, Kind::Goodbye));
    CHECK_FALSE(has(kinds, Kind::Result));
}

TEST_CASE("worker: in the world, Shutdown{immediate} does not wait for Release",
          "[worker][faults]") {
    LeavingRig rig(true);
    rig.handshake();
    rig.send({{Shutdown{true}, {}}});
    CHECK(rig.exit_status(2s) == 0);
    CHECK(rig.closed_clean == 0);
    CHECK_FALSE(has(rig.received(50ms), Kind::Goodbye));
}

TEST_CASE("worker: Release{finalize=false} lets a world worker leave unclean",
          "[worker][faults]") {
    LeavingRig rig(true);
    rig.handshake();
    rig.send({{Shutdown{}, {}}});
    REQUIRE(rig.next(Kind::Goodbye).has_value());
    CHECK_FALSE(rig.exit_status(100ms).has_value());  // waits for Release
    rig.send({{Release{false}, {}}});
    CHECK(rig.exit_status(2s) == 0);
    CHECK(rig.closed_clean == 0);  // no finalize: the world lost a rank
}

TEST_CASE("worker: Release{finalize=true} ends a world worker cleanly", "[worker][faults]") {
    LeavingRig rig(true);
    rig.handshake();
    rig.send({{Shutdown{}, {}}});
    REQUIRE(rig.next(Kind::Goodbye).has_value());
    rig.send({{Release{true}, {}}});
    CHECK(rig.exit_status(2s) == 0);
    CHECK(rig.closed_clean == 1);
}
