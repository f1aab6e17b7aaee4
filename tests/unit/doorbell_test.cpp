// doorbell.hpp: dozing on bells rung by other threads and other processes.
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <future>
#include <thread>

#include "ppmpi/core/doorbell.hpp"

using namespace ppmpi;
using std::chrono::milliseconds;

namespace {

double elapsed_ms(Clock::time_point since) {
    return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

// Waits (bounded) until someone is counted asleep on the bell.
bool someone_sleeps_on(const Doorbell& bell) {
    auto until = Clock::now() + std::chrono::seconds(10);
    while (bell.sleepers.load() == 0 && Clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    return bell.sleepers.load() > 0;
}

Doze doze_on(Doorbell& bell, Clock::duration for_how_long) {
    Doze plan;
    plan.bells = {&bell};
    plan.until = Clock::now() + for_how_long;
    return plan;
}

}  // namespace

TEST_CASE("doorbell: a bell rung by another thread ends a doze long before its deadline",
          "[doorbell]") {
    REQUIRE(doze_supported());  // Linux >= 5.16, as on Debian 12
    Doorbell bell;
    Wakeup w;
    auto start = Clock::now();
    auto dozer = std::async(std::launch::async,
                            [&] { return w.doze(doze_on(bell, std::chrono::seconds(30))); });
    REQUIRE(someone_sleeps_on(bell));
    ring(bell);
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    CHECK(elapsed_ms(start) < 10000);
    CHECK(bell.sleepers.load() == 0);  // the dozer left the count
}

TEST_CASE("doorbell: a sleeper that waits only for urgent records sleeps through others",
          "[doorbell]") {
    Doorbell bell;
    Wakeup w;
    auto plan = doze_on(bell, std::chrono::seconds(30));
    plan.only_urgent = true;
    auto dozer = std::async(std::launch::async, [&] { return w.doze(plan); });
    REQUIRE(someone_sleeps_on(bell));
    ring(bell, /*urgent=*/false);
    CHECK(bell.seq.load() == 0);  // not woken
    CHECK(dozer.wait_for(milliseconds(50)) == std::future_status::timeout);
    ring(bell, /*urgent=*/true);
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    // The next doze waits for everything again: a record that is not urgent wakes it.
    auto again = std::async(std::launch::async,
                            [&] { return w.doze(doze_on(bell, std::chrono::seconds(30))); });
    REQUIRE(someone_sleeps_on(bell));
    ring(bell, /*urgent=*/false);
    REQUIRE(again.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(again.get());
}

TEST_CASE("doorbell: another thread widens a doze for urgent records to every record without "
          "waking it", "[doorbell]") {
    Doorbell bell;
    Wakeup w;
    CHECK_FALSE(w.widen());  // no doze under way: the caller must notify instead
    auto plan = doze_on(bell, std::chrono::seconds(30));
    plan.only_urgent = true;
    auto dozer = std::async(std::launch::async, [&] { return w.doze(plan); });
    REQUIRE(someone_sleeps_on(bell));
    CHECK(w.widen());
    CHECK(bell.seq.load() == 0);  // widening woke nobody
    CHECK(dozer.wait_for(milliseconds(50)) == std::future_status::timeout);
    CHECK(bell.only_urgent.load() == 0);
    ring(bell, /*urgent=*/false);  // now enough
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    CHECK_FALSE(w.widen());  // that doze is over
}

TEST_CASE("doorbell: ringing with nobody asleep changes nothing", "[doorbell]") {
    Doorbell bell;
    ring(bell);
    CHECK(bell.seq.load() == 0);  // no wake-up paid for
}

TEST_CASE("doorbell: a doze ends at its deadline, or at a notify from this process",
          "[doorbell]") {
    Doorbell bell;
    Wakeup w;
    auto start = Clock::now();
    CHECK_FALSE(w.doze(doze_on(bell, milliseconds(30))));
    CHECK(elapsed_ms(start) >= 29.0);

    auto dozer = std::async(std::launch::async,
                            [&] { return w.doze(doze_on(bell, std::chrono::seconds(30))); });
    REQUIRE(someone_sleeps_on(bell));
    w.notify();
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());

    w.notify();  // before the doze: not lost
    CHECK(w.doze(doze_on(bell, std::chrono::seconds(30))));
}

TEST_CASE("doorbell: data that arrived before the doze was counted is not slept through",
          "[doorbell]") {
    Doorbell bell;
    Wakeup w;
    Doze plan = doze_on(bell, std::chrono::seconds(30));
    int checks = 0;
    plan.arrived = [&] {
        ++checks;
        CHECK(bell.sleepers.load() == 1);  // counted before the check (step 1)
        return true;
    };
    auto start = Clock::now();
    CHECK(w.doze(plan));
    CHECK(checks == 1);
    CHECK(elapsed_ms(start) < 10000);
}

TEST_CASE("doorbell: no record is slept through, record after record", "[doorbell]") {
    // A writer publishes a counter and rings; the reader dozes until it moves. A lost wake-up
    // would leave the reader asleep until its deadline: the doze would report a time-out.
    constexpr std::uint64_t kRecords = 3000;
    Doorbell bell;
    Wakeup w;
    std::atomic<std::uint64_t> published{0}, consumed{0};
    std::atomic<bool> reader_gone{false};
    auto writer = std::async(std::launch::async, [&] {
        for (std::uint64_t i = 1; i <= kRecords && !reader_gone.load(); ++i) {
            // Publishes 0-2 µs after the reader took the last record: sometimes before the
            // reader is counted asleep, sometimes after, sometimes while it sleeps.
            auto at = Clock::now() + std::chrono::nanoseconds(i * 7919 % 2000);
            while (Clock::now() < at) {
            }
            published.store(i);
            ring(bell);
            auto until = Clock::now() + std::chrono::seconds(20);  // spins: reacts at once
            while (consumed.load() < i && !reader_gone.load() && Clock::now() < until) {
            }
        }
    });
    int timeouts = 0;
    auto give_up = Clock::now() + std::chrono::seconds(20);
    while (consumed.load() < kRecords && Clock::now() < give_up) {
        Doze plan = doze_on(bell, milliseconds(500));
        plan.arrived = [&] { return published.load() > consumed.load(); };
        if (!w.doze(plan) && published.load() > consumed.load()) ++timeouts;
        consumed.store(published.load());
    }
    reader_gone.store(true);
    writer.get();
    CHECK(consumed.load() == kRecords);
    CHECK(timeouts == 0);
}

TEST_CASE("doorbell: a bell in shared memory is rung by another process", "[doorbell]") {
    void* memory = ::mmap(nullptr, sizeof(Doorbell), PROT_READ | PROT_WRITE,
                          MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    REQUIRE(memory != MAP_FAILED);
    auto* bell = new (memory) Doorbell{};
    pid_t child = ::fork();
    REQUIRE(child >= 0);
    if (child == 0) {  // waits (bounded) for the parent to doze, rings, and leaves
        int status = someone_sleeps_on(*bell) ? 0 : 1;
        ring(*bell);
        ::_exit(status);
    }
    Wakeup w;
    auto start = Clock::now();
    bool woken = w.doze(doze_on(*bell, std::chrono::seconds(30)));
    int status = -1;
    REQUIRE(::waitpid(child, &status, 0) == child);
    CHECK(WIFEXITED(status));
    CHECK(WEXITSTATUS(status) == 0);
    CHECK(woken);
    CHECK(elapsed_ms(start) < 10000);
    ::munmap(memory, sizeof(Doorbell));
}
