// bell_transport.hpp between two loopback endpoints of one process: real bell pages, no MPI.
// And doorbell.hpp's dozes on file descriptors (what MpiTransport gives a worker over TCP).
#include <catch2/catch.hpp>

#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <future>
#include <thread>

#include "ppmpi/core/process.hpp"
#include "ppmpi/transport/bell_transport.hpp"
#include "ppmpi/transport/loopback_transport.hpp"

using namespace ppmpi;

namespace {

constexpr PeerId kMaster = 0;
constexpr PeerId kWorker = 1;

struct BellPair {
    std::shared_ptr<LoopbackHub> hub = LoopbackHub::create();
    BellTransport master{hub->endpoint(kMaster)};
    BellTransport worker{hub->endpoint(kWorker)};

    // Offer (unless made already), answer, and the answer read: the master rings the worker's
    // bell from now on.
    void handshake(bool offered = false) {
        std::string why;
        if (!offered) REQUIRE(worker.offer(kMaster, why));
        CHECK_FALSE(master.poll());  // reads the offer, answers it
        CHECK(master.attached(kWorker));
        CHECK_FALSE(worker.poll());  // reads the answer
        REQUIRE(worker.attached(kMaster));
    }
};

Envelope next(Transport& side) {
    for (int i = 0; i < 100; ++i)
        if (auto envelope = side.poll()) return std::move(*envelope);
    FAIL("no frame arrived");
    return {};
}

bool someone_sleeps_on(const Doorbell& bell) {
    auto until = Clock::now() + std::chrono::seconds(10);
    while (bell.sleepers.load() == 0 && Clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    return bell.sleepers.load() > 0;
}

}  // namespace

TEST_CASE("bell transport: the master's next frame wakes a dozing worker; frames stay on the "
          "inner transport",
          "[bell][doorbell]") {
    REQUIRE(doze_supported());
    BellPair pair;
    Doze early;
    early.until = Clock::now();
    std::string why;
    REQUIRE(pair.worker.offer(kMaster, why));
    CHECK_FALSE(pair.worker.plan_doze({kMaster}, early));  // offered, not answered: no doze
    pair.handshake(/*offered=*/true);
    Doze plan;
    REQUIRE(pair.worker.plan_doze({kMaster}, plan));
    REQUIRE(plan.bells.size() == 1);
    CHECK_FALSE(plan.arrived());
    plan.until = Clock::now() + std::chrono::seconds(30);
    Wakeup wakeup;
    auto start = Clock::now();
    auto dozer = std::async(std::launch::async, [&] { return wakeup.doze(plan); });
    REQUIRE(someone_sleeps_on(*plan.bells[0]));
    pair.master.post(kWorker, Frame{"task", {}});
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    CHECK(Clock::now() - start < std::chrono::seconds(10));
    CHECK(next(pair.worker).frame == "task");
    pair.worker.post(kMaster, Frame{"result", {}});  // the worker rings nothing
    CHECK(next(pair.master).frame == "result");
    Doze master_plan;
    CHECK_FALSE(pair.master.plan_doze({kWorker}, master_plan));  // its peer's frames ring nothing
}

TEST_CASE("bell transport: a worker dozing behind its running job is woken by an urgent frame "
          "or a large one, not by a small task",
          "[bell][doorbell]") {
    BellPair pair;
    pair.handshake();
    Doze plan;
    REQUIRE(pair.worker.plan_doze({kMaster}, plan));
    plan.only_urgent = true;
    plan.until = Clock::now() + std::chrono::seconds(30);
    Doorbell& bell = *plan.bells[0];
    Wakeup wakeup;
    auto dozer = std::async(std::launch::async, [&] { return wakeup.doze(plan); });
    REQUIRE(someone_sleeps_on(bell));
    pair.master.post(kWorker, Frame{"task", {}, /*urgent=*/false});
    CHECK(bell.seq.load() == 0);  // not rung: read when the job ends
    pair.master.post(kWorker, Frame{Bytes(5000, 't'), {}, /*urgent=*/false});
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    CHECK(next(pair.worker).frame == "task");
    CHECK(next(pair.worker).frame.size() == 5000);
    Doze again;
    REQUIRE(pair.worker.plan_doze({kMaster}, again));
    again.only_urgent = true;
    again.until = Clock::now() + std::chrono::seconds(30);
    auto second = std::async(std::launch::async, [&] { return wakeup.doze(again); });
    REQUIRE(someone_sleeps_on(bell));
    pair.master.post(kWorker, Frame{"withdraw", {}});  // urgent
    REQUIRE(second.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(second.get());
    CHECK(next(pair.worker).frame == "withdraw");
}

TEST_CASE("bell transport: a frame posted before the worker counted itself asleep is found by "
          "the re-check, and comes out first",
          "[bell][doorbell]") {
    BellPair pair;
    pair.handshake();
    pair.master.post(kWorker, Frame{"one", {}});
    pair.master.post(kWorker, Frame{"two", {}});
    Doze plan;
    REQUIRE(pair.worker.plan_doze({kMaster}, plan));
    CHECK(plan.arrived());  // no sleep
    Doze again;
    CHECK_FALSE(pair.worker.plan_doze({kMaster}, again));  // a frame is kept to be read
    CHECK(next(pair.worker).frame == "one");
    CHECK(next(pair.worker).frame == "two");
}

TEST_CASE("bell transport: an offer from another host is declined, and the worker dozes as "
          "its inner transport allows",
          "[bell]") {
    BellPair pair;
    auto stranger = pair.hub->endpoint(5);
    stranger->post_control(kMaster, "ppmpi-bell 1 elsewhere.invalid 7 /proc/1/fd/3");
    CHECK_FALSE(pair.master.poll());
    CHECK_FALSE(pair.master.attached(5));
    auto answer = stranger->poll();
    REQUIRE(answer);
    CHECK(answer->control);
    CHECK(answer->frame.rfind("ppmpi-bell declined another host", 0) == 0);
    stranger->post_control(kMaster, "ppmpi-bell 2 " + this_host_name() + " 7 /proc/1/fd/3");
    CHECK_FALSE(pair.master.poll());
    answer = stranger->poll();
    REQUIRE(answer);
    CHECK(answer->frame.find("version 2") != std::string::npos);

    std::string why;  // a real offer whose answer says declined
    REQUIRE(pair.worker.offer(kMaster, why));
    auto offer = pair.hub->receive(kMaster);  // taken before the master sees it
    REQUIRE(offer);
    pair.master.post_control(kWorker, "ppmpi-bell declined for this test");
    CHECK_FALSE(pair.worker.poll());
    CHECK_FALSE(pair.worker.attached(kMaster));
    Doze plan;
    CHECK_FALSE(pair.worker.plan_doze({kMaster}, plan));  // loopback: no way to doze
}

TEST_CASE("bell transport: other layers' control messages pass through; a forgotten peer is "
          "rung no more",
          "[bell]") {
    BellPair pair;
    pair.handshake();
    pair.worker.post_control(kMaster, "ppmpi-shm declined not mine");
    auto passed = pair.master.poll();
    REQUIRE(passed);
    CHECK(passed->control);
    CHECK(passed->frame == "ppmpi-shm declined not mine");
    pair.master.forget(kWorker);
    CHECK_FALSE(pair.master.attached(kWorker));
    pair.master.post(kWorker, Frame{"ignored", {}});  // no throw, no ring
}

TEST_CASE("doorbell: a doze on descriptors ends when one is readable, at a notify, or at its "
          "deadline, and says which",
          "[doorbell]") {
    int fds[2];
    REQUIRE(::pipe(fds) == 0);
    Wakeup wakeup;
    bool on_fd = false;
    Doze plan;
    plan.fds = {fds[0]};
    plan.woke_on_fd = &on_fd;
    plan.until = Clock::now() + std::chrono::milliseconds(20);
    CHECK_FALSE(wakeup.doze(plan));  // the deadline
    CHECK_FALSE(on_fd);

    plan.until = Clock::now() + std::chrono::seconds(30);
    auto dozer = std::async(std::launch::async, [&] { return wakeup.doze(plan); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    REQUIRE(::write(fds[1], "x", 1) == 1);
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    CHECK(on_fd);
    char byte;
    REQUIRE(::read(fds[0], &byte, 1) == 1);

    on_fd = false;
    auto notified = std::async(std::launch::async, [&] { return wakeup.doze(plan); });
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
    wakeup.notify();
    REQUIRE(notified.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(notified.get());
    CHECK_FALSE(on_fd);
    wakeup.notify();  // before the doze: it does not sleep
    CHECK(wakeup.doze(plan));
    ::close(fds[0]);
    ::close(fds[1]);
}

TEST_CASE("doorbell: open_sockets lists sockets and nothing else", "[doorbell]") {
    int pipe_fds[2];
    REQUIRE(::pipe(pipe_fds) == 0);
    int pair_fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair_fds) == 0);
    auto sockets = open_sockets();
    auto has = [&](int fd) { return std::find(sockets.begin(), sockets.end(), fd) != sockets.end(); };
    CHECK(has(pair_fds[0]));
    CHECK(has(pair_fds[1]));
    CHECK_FALSE(has(pipe_fds[0]));
    CHECK_FALSE(has(pipe_fds[1]));
    for (int fd : {pipe_fds[0], pipe_fds[1], pair_fds[0], pair_fds[1]}) ::close(fd);
}
