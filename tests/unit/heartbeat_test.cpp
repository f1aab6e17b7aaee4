// HeartbeatMonitor: which workers are silent, with the time passed in.
#include <catch2/catch.hpp>


#include <set>

#include "ppmpi/core/heartbeat.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

namespace {

std::set<PeerId> silent_set(const HeartbeatMonitor& monitor, Clock::time_point now) {
    std::set<PeerId> out;
    for (const auto& silence : monitor.silent(now)) out.insert(silence.worker);
    return out;
}

}  // namespace

TEST_CASE("heartbeat: a watched worker is silent only after its timeout", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(7, 2s, t0);
    CHECK(monitor.watching(7));
    CHECK(monitor.silent(t0).empty());
    CHECK(monitor.silent(t0 + 1999ms).empty());
    CHECK(monitor.silent(t0 + 2s).empty());  // exactly the timeout: not yet (>, not >=)
    CHECK(silent_set(monitor, t0 + 2s + 1ns) == std::set<PeerId>{7});
}

TEST_CASE("heartbeat: hearing from a worker restarts its timeout", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(1, 1s, t0);
    monitor.heard(1, t0 + 800ms);
    CHECK(monitor.silent(t0 + 1500ms).empty());
    CHECK(monitor.silent(t0 + 1800ms).empty());
    CHECK(silent_set(monitor, t0 + 1800ms + 1ns) == std::set<PeerId>{1});
    monitor.heard(1, t0 + 5s);  // a silent worker that speaks again is no longer silent
    CHECK(monitor.silent(t0 + 5500ms).empty());
}

TEST_CASE("heartbeat: each worker has its own timeout", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(1, 1s, t0);
    monitor.watch(2, 3s, t0);
    monitor.watch(3, 1s, t0 + 1500ms);
    CHECK(monitor.silent(t0 + 1s).empty());
    CHECK(silent_set(monitor, t0 + 2s) == std::set<PeerId>{1});
    CHECK(silent_set(monitor, t0 + 2600ms) == std::set<PeerId>{1, 3});
    CHECK(silent_set(monitor, t0 + 3001ms) == std::set<PeerId>{1, 2, 3});
}

TEST_CASE("heartbeat: forget stops watching; heard does not start it", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(1, 1s, t0);
    monitor.watch(2, 1s, t0);
    monitor.forget(1);
    CHECK_FALSE(monitor.watching(1));
    CHECK(monitor.watching(2));
    CHECK(silent_set(monitor, t0 + 5s) == std::set<PeerId>{2});
    monitor.forget(1);  // twice is fine
    monitor.heard(9, t0);  // never watched: still not watched
    CHECK_FALSE(monitor.watching(9));
    CHECK(silent_set(monitor, t0 + 5s) == std::set<PeerId>{2});
}

TEST_CASE("heartbeat: watch again replaces the timeout and the time", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(4, 120s, t0);        // e.g. until its Hello (start_timeout)
    monitor.watch(4, 1s, t0 + 10s);    // then the pool's worker_timeout
    CHECK(monitor.silent(t0 + 11s).empty());
    CHECK(silent_set(monitor, t0 + 11s + 1ms) == std::set<PeerId>{4});
}

TEST_CASE("heartbeat: a postponed worker is not reported again until then", "[heartbeat]") {
    HeartbeatMonitor monitor;
    auto t0 = Clock::now();
    monitor.watch(1, 1s, t0);
    monitor.watch(2, 1s, t0);
    CHECK(silent_set(monitor, t0 + 2s) == std::set<PeerId>{1, 2});
    monitor.postpone(1, t0 + 3s);
    CHECK(silent_set(monitor, t0 + 2s) == std::set<PeerId>{2});
    CHECK(silent_set(monitor, t0 + 3s) == std::set<PeerId>{1, 2});  // its silence went on
    auto silence = monitor.silent(t0 + 3s);
    for (const auto& s : silence) CHECK(s.silent_for == 3s);
    monitor.postpone(1, t0 + 10s);
    monitor.heard(1, t0 + 4s);  // heard: the postponement is over, the timeout starts anew
    CHECK(silent_set(monitor, t0 + 5s + 1ms) == std::set<PeerId>{1, 2});
}
