// SpawnQueue (spawn_queue.hpp) with fake launches: each call of the launch function does what
// the test's script says (return, throw, or block until the test opens its gate). Time is
// passed in; the launches themselves run on real threads, so results are polled for.
#include "ppmpi/master/spawn_queue.hpp"

#include <atomic>
#include <catch2/catch.hpp>
#include <condition_variable>
#include <mutex>
#include <set>
#include <thread>

using namespace ppmpi;
using namespace std::chrono_literals;
using Launch = SpawnQueue::Event::Kind;

namespace {

enum class Act { Return, Throw, Block };

// Shared by the queue's launch function (on attempt threads) and the test.
struct Script {
    std::mutex mutex;
    std::condition_variable opened_cv;
    std::vector<Act> acts; // per call, in call order; past the end: Return
    bool opened = false;   // blocked calls return once this is set
    std::vector<std::string> names;
    std::vector<std::size_t> counts;  // processes asked for, per call
    int running = 0, most_running = 0;

    SpawnQueue::Handle call(const std::string& name, std::size_t count) {
        std::unique_lock<std::mutex> lock(mutex);
        int index = static_cast<int>(names.size());
        names.push_back(name);
        counts.push_back(count);
        Act act = index < static_cast<int>(acts.size()) ? acts[index] : Act::Return;
        most_running = std::max(most_running, ++running);
        if (act == Act::Block) opened_cv.wait(lock, [&] { return opened; });
        --running;
        if (act == Act::Throw)
            throw std::runtime_error("refused by the test (call " + std::to_string(index) + ")");
        return index; // the handle says which call made it
    }
    void open() {
        std::lock_guard<std::mutex> lock(mutex);
        opened = true;
        opened_cv.notify_all();
    }
    std::size_t calls() {
        std::lock_guard<std::mutex> lock(mutex);
        return names.size();
    }
};

struct Rig {
    std::shared_ptr<Script> script = std::make_shared<Script>();
    SpawnQueue::Clock::time_point t0 = SpawnQueue::Clock::now();
    std::unique_ptr<SpawnQueue> queue;

    explicit Rig(std::vector<Act> acts, bool threaded = true) {
        script->acts = std::move(acts);
        SpawnQueue::Options options;
        options.first_bound = 1000ms;
        options.per_process = 100ms;
        options.max_attempts = 3;
        options.threaded = threaded;
        auto shared = script;
        queue = std::make_unique<SpawnQueue>(
            [shared](const std::string& name, std::size_t count) {
                return shared->call(name, count);
            },
            options);
    }
    ~Rig() { script->open(); } // no attempt thread stays blocked after the test

    // Polls at fake time t0 + `at` until an event comes (the launch threads run for real).
    std::vector<SpawnQueue::Event> next(std::chrono::milliseconds at) {
        for (int i = 0; i < 2000; ++i) {
            auto events = queue->poll(t0 + at);
            if (!events.empty()) return events;
            std::this_thread::sleep_for(1ms);
        }
        return {};
    }
    // Waits until the script saw `n` calls, polling at t0 + `at` so queued attempts start.
    void await_calls(std::size_t n, std::chrono::milliseconds at) {
        for (int i = 0; i < 2000 && script->calls() < n; ++i) {
            REQUIRE(queue->poll(t0 + at).empty());
            std::this_thread::sleep_for(1ms);
        }
        REQUIRE(script->calls() == n);
    }
};

int call_of(const SpawnQueue::Event& event) {
    return std::any_cast<int>(event.handle);
}

} // namespace

TEST_CASE(
    "spawn queue: launches run one at a time, in request order, each with a unique attempt name") {
    Rig rig({});
    for (PeerId peer : {7, 8, 9})
        rig.queue->request(peer);
    std::vector<PeerId> started;
    while (started.size() < 3) {
        auto events = rig.next(0ms);
        REQUIRE(events.size() == 1);
        REQUIRE(events[0].kind == Launch::Started);
        REQUIRE(call_of(events[0]) == static_cast<int>(started.size()));
        REQUIRE(events[0].peers.size() == 1);
        started.push_back(events[0].peers[0]);
    }
    REQUIRE(started == std::vector<PeerId>{7, 8, 9});
    REQUIRE(rig.script->most_running == 1);
    std::set<std::string> names(rig.script->names.begin(), rig.script->names.end());
    REQUIRE(names.size() == 3);
    REQUIRE_FALSE(rig.queue->busy());
    REQUIRE(rig.queue->abandoned_total() == 0);
}

TEST_CASE(
    "spawn queue: a launch that does not return in time is abandoned and retried; when it returns "
    "late it is a surplus") {
    Rig rig({Act::Block});
    rig.queue->request(5);
    rig.await_calls(1, 0ms);
    rig.await_calls(1, 999ms);      // not yet past its bound
    auto events = rig.next(1000ms); // abandoned; the retry (call 1) returns at once
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Started);
    REQUIRE(events[0].peers == std::vector<PeerId>{5});
    REQUIRE(call_of(events[0]) == 1);
    REQUIRE(rig.queue->abandoned_total() == 1);
    REQUIRE(rig.queue->stuck() == 1);
    REQUIRE(rig.script->names[0] != rig.script->names[1]);
    rig.script->open();
    events = rig.next(1000ms);
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Surplus);
    REQUIRE(events[0].peers.empty());
    REQUIRE(events[0].processes == 1);
    REQUIRE(call_of(events[0]) == 0);
    REQUIRE(rig.queue->stuck() == 0);
}

TEST_CASE(
    "spawn queue: an abandoned attempt that returns first gives the peer its process; the retry is "
    "then the surplus") {
    Rig rig({Act::Block, Act::Block});
    rig.queue->request(3);
    rig.await_calls(1, 0ms);
    rig.await_calls(2, 1000ms); // attempt 1 abandoned, attempt 2 blocks too
    rig.script->open();         // both return; the first one settled wins
    std::vector<SpawnQueue::Event> all;
    while (all.size() < 2) {
        auto events = rig.next(1000ms);
        all.insert(all.end(), events.begin(), events.end());
    }
    REQUIRE(all[0].kind == Launch::Started);
    REQUIRE(all[1].kind == Launch::Surplus);
    REQUIRE(all[0].peers == std::vector<PeerId>{3});
    REQUIRE(all[1].processes == 1);
    REQUIRE(call_of(all[0]) != call_of(all[1]));
}

TEST_CASE("spawn queue: bounds double per attempt, and a peer whose every attempt hangs fails "
          "naming why") {
    Rig rig({Act::Block, Act::Block, Act::Block});
    rig.queue->request(4);
    rig.queue->request(6); // waits behind 4's attempts
    rig.await_calls(1, 0ms);
    rig.await_calls(2, 1000ms); // attempt 2: bound 2 s, so until 3000 ms
    rig.await_calls(2, 2999ms);
    rig.await_calls(3, 3000ms); // attempt 3: bound 4 s, so until 7000 ms
    rig.await_calls(3, 6999ms);
    auto events = rig.queue->poll(rig.t0 + 7000ms);
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Failed);
    REQUIRE(events[0].peers == std::vector<PeerId>{4});
    REQUIRE_THAT(events[0].error, Catch::Contains("MPI_Comm_spawn did not return within 4.0 s") &&
                                      Catch::Contains("gave up after 3 attempts"));
    REQUIRE(rig.queue->stuck() == 3);
    events = rig.next(7000ms); // then peer 6 gets its turn (call 3 returns at once)
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Started);
    REQUIRE(events[0].peers == std::vector<PeerId>{6});
}

TEST_CASE("spawn queue: a launch that throws is retried at once, then fails with its error") {
    Rig rig({Act::Throw, Act::Throw, Act::Throw});
    rig.queue->request(2);
    std::vector<SpawnQueue::Event> all;
    while (all.empty())
        all = rig.next(0ms);
    REQUIRE(rig.script->calls() == 3);
    REQUIRE(all.size() == 1);
    REQUIRE(all[0].kind == Launch::Failed);
    REQUIRE_THAT(all[0].error, Catch::Contains("refused by the test (call 2)") &&
                                   Catch::Contains("gave up after 3 attempts"));
    REQUIRE(rig.queue->abandoned_total() == 0);
}

TEST_CASE("spawn queue: a cancelled peer is not launched, and its running attempt's process "
          "comes back unwanted") {
    Rig rig({Act::Block});
    rig.queue->request(1);
    rig.queue->request(2);
    rig.await_calls(1, 0ms);
    rig.queue->cancel(1);
    rig.queue->cancel(2);
    rig.script->open();
    auto events = rig.next(0ms);
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Started);
    REQUIRE(events[0].peers == std::vector<PeerId>{1});
    REQUIRE(events[0].unwanted == std::vector<PeerId>{1});
    for (int i = 0; i < 20; ++i)
        REQUIRE(rig.queue->poll(rig.t0).empty());
    REQUIRE(rig.script->calls() == 1); // peer 2 never launched
    REQUIRE_FALSE(rig.queue->busy());
}

TEST_CASE("spawn queue: without threads the launch runs inside poll and is never abandoned") {
    Rig rig({}, /*threaded=*/false);
    rig.queue->request(9);
    REQUIRE(rig.script->calls() == 0);
    auto first = rig.queue->poll(rig.t0); // starts it: done when poll returns
    REQUIRE(first.empty());
    REQUIRE(rig.script->calls() == 1);
    auto events = rig.queue->poll(rig.t0 + 60s);
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Started);
    REQUIRE(rig.queue->abandoned_total() == 0);
}

TEST_CASE("spawn queue: the peers asked for together start in one launch, whose bound grows "
          "with its processes") {
    Rig rig({Act::Block, Act::Return});
    rig.queue->request(std::vector<PeerId>{10, 11, 12});
    rig.await_calls(1, 0ms);
    REQUIRE(rig.script->counts[0] == 3);
    rig.await_calls(1, 1199ms);  // 1 s + 2 x 100 ms
    auto events = rig.next(1200ms);  // abandoned; the retry returns at once
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Started);
    REQUIRE(events[0].peers == std::vector<PeerId>{10, 11, 12});
    REQUIRE(events[0].processes == 3);
    REQUIRE(events[0].unwanted.empty());
    REQUIRE(rig.script->counts[1] == 3);
}

TEST_CASE("spawn queue: a launch with some peers cancelled still starts, naming them unwanted") {
    Rig rig({});
    rig.queue->request(std::vector<PeerId>{1, 2, 3});
    rig.queue->cancel(2);
    auto events = rig.next(0ms);
    REQUIRE(events.size() == 1);
    REQUIRE(events[0].kind == Launch::Started);
    REQUIRE(events[0].unwanted == std::vector<PeerId>{2});
    REQUIRE(rig.script->counts[0] == 3);
}
