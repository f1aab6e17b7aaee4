// backoff.hpp: the idle policy of the comm loops (time injected, no real sleeps) and Wakeup.
#include <catch2/catch.hpp>

#include <future>
#include <thread>

#include "ppmpi/core/backoff.hpp"

using namespace ppmpi;
using std::chrono::microseconds;
using std::chrono::milliseconds;

namespace {

BackoffPolicy small_policy() {
    BackoffPolicy p;
    p.spin_for = microseconds(100);
    p.first_sleep = microseconds(10);
    p.max_sleep = microseconds(80);
    return p;
}

const Clock::time_point t0 = Clock::time_point{} + std::chrono::hours(1);

double elapsed_ms(Clock::time_point since) {
    return std::chrono::duration<double, std::milli>(Clock::now() - since).count();
}

}  // namespace

TEST_CASE("backoff: spins, then doubles up to the cap", "[backoff]") {
    Backoff b(small_policy());
    CHECK(b.next_delay(t0) == microseconds(0));
    CHECK(b.next_delay(t0 + microseconds(50)) == microseconds(0));
    CHECK(b.next_delay(t0 + microseconds(99)) == microseconds(0));
    auto t = t0 + microseconds(100);
    CHECK(b.next_delay(t) == microseconds(10));
    CHECK(b.next_delay(t) == microseconds(20));
    CHECK(b.next_delay(t) == microseconds(40));
    CHECK(b.next_delay(t) == microseconds(80));
    CHECK(b.next_delay(t) == microseconds(80));
    CHECK(b.next_delay(t + std::chrono::seconds(10)) == microseconds(80));
}

TEST_CASE("backoff: reset restarts the spin phase and the doubling", "[backoff]") {
    Backoff b(small_policy());
    auto t = t0 + microseconds(500);
    b.next_delay(t0);
    for (int i = 0; i < 6; ++i) b.next_delay(t);
    REQUIRE(b.next_delay(t) == microseconds(80));

    b.reset();
    auto t1 = t0 + std::chrono::seconds(3);
    CHECK(b.next_delay(t1) == microseconds(0));  // idle time counts from here
    CHECK(b.next_delay(t1 + microseconds(99)) == microseconds(0));
    CHECK(b.next_delay(t1 + microseconds(100)) == microseconds(10));
    CHECK(b.next_delay(t1 + microseconds(100)) == microseconds(20));
}

TEST_CASE("backoff: default policy", "[backoff]") {
    Backoff b;  // whatever the defaults, they follow the same shape
    REQUIRE(b.policy().spin_for > microseconds(0));
    REQUIRE(b.policy().first_sleep <= b.policy().max_sleep);
    CHECK(b.next_delay(t0) == microseconds(0));
    auto t = t0 + b.policy().spin_for;
    microseconds expected = b.policy().first_sleep;
    for (int i = 0; i < 12; ++i) {
        CHECK(b.next_delay(t) == expected);
        expected = std::min(expected * 2, b.policy().max_sleep);
    }
    CHECK(b.next_delay(t) == b.policy().max_sleep);
}

TEST_CASE("backoff: zero spin sleeps at once", "[backoff]") {
    BackoffPolicy p = small_policy();
    p.spin_for = microseconds(0);
    Backoff b(p);
    CHECK(b.next_delay(t0) == microseconds(10));
    CHECK(b.next_delay(t0) == microseconds(20));
}

TEST_CASE("backoff: nothing expected soon skips the spin, sleeping from spin_for up",
          "[backoff]") {
    BackoffPolicy p = small_policy();  // spin 100, sleeps from 10 ...
    p.max_sleep = microseconds(300);    // ... to 300
    Backoff b(p);
    CHECK(b.next_delay(t0, false) == microseconds(100));
    CHECK(b.next_delay(t0, false) == microseconds(200));
    CHECK(b.next_delay(t0, false) == microseconds(300));
    CHECK(b.next_delay(t0, false) == microseconds(300));
    b.reset();
    CHECK(b.next_delay(t0) == microseconds(0));  // expected again: the spin is back
}

TEST_CASE("wakeup: a notify before the wait is not lost", "[backoff][wakeup]") {
    Wakeup w;
    w.notify();
    auto start = Clock::now();
    CHECK(w.wait_for(std::chrono::seconds(30)));
    CHECK(elapsed_ms(start) < 1000);
    // The signal was cleared by that wait.
    CHECK_FALSE(w.wait_for(microseconds(0)));

    w.notify();
    w.notify();  // signals do not pile up
    CHECK(w.wait_for(microseconds(0)));
    CHECK_FALSE(w.wait_for(microseconds(0)));
}

TEST_CASE("wakeup: wait_for times out without a notify", "[backoff][wakeup]") {
    Wakeup w;
    auto start = Clock::now();
    CHECK_FALSE(w.wait_for(milliseconds(30)));
    CHECK(elapsed_ms(start) >= 29.0);
    CHECK(elapsed_ms(start) < 5000);
}

TEST_CASE("wakeup: a notify from another thread cuts a long wait short", "[backoff][wakeup]") {
    Wakeup w;
    auto start = Clock::now();
    auto waiter = std::async(std::launch::async, [&] { return w.wait_for(std::chrono::seconds(30)); });
    std::this_thread::sleep_for(milliseconds(20));
    w.notify();
    REQUIRE(waiter.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(waiter.get());
    CHECK(elapsed_ms(start) < 5000);
}
