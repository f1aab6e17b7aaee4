// log.hpp: levels, the sink, and the bounded queue the Python side drains.
#include <catch2/catch.hpp>

#include <thread>

#include "ppmpi/core/log.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

TEST_CASE("log: messages below the level never reach the sink", "[log]") {
    std::vector<std::pair<LogLevel, std::string>> seen;
    set_log_sink([&](LogLevel level, const std::string& text) { seen.emplace_back(level, text); });
    set_log_level(LogLevel::Warning);
    log_debug("d");
    log_info("i");
    log_warning("w");
    log_error("e");
    CHECK_FALSE(log_enabled(LogLevel::Info));
    set_log_level(LogLevel::Debug);
    log_debug("d2");
    set_log_sink(nullptr);
    set_log_level(LogLevel::Info);
    REQUIRE(seen.size() == 3);
    CHECK(seen[0] == std::make_pair(LogLevel::Warning, std::string("w")));
    CHECK(seen[1] == std::make_pair(LogLevel::Error, std::string("e")));
    CHECK(seen[2] == std::make_pair(LogLevel::Debug, std::string("d2")));
}

TEST_CASE("log queue: keeps order, drops the oldest when full and says so", "[log]") {
    LogQueue queue(3);
    for (int i = 0; i < 5; ++i) queue.push(LogLevel::Info, "m" + std::to_string(i));
    auto records = queue.pop_all(0s);
    REQUIRE(records.size() == 4);
    CHECK(records[0].level == LogLevel::Warning);
    CHECK(records[0].text.find("2 log messages were dropped") == 0);
    CHECK(records[1].text == "m2");
    CHECK(records[3].text == "m4");
    CHECK(queue.pop_all(0s).empty());
}

TEST_CASE("log queue: a reader waits for a record or a wake, within its timeout", "[log]") {
    LogQueue queue;
    std::thread writer([&] {
        std::this_thread::sleep_for(20ms);
        queue.push(LogLevel::Error, "late");
    });
    auto records = queue.pop_all(5s);
    writer.join();
    REQUIRE(records.size() == 1);
    CHECK(records[0].text == "late");
    std::thread waker([&] {
        std::this_thread::sleep_for(20ms);
        queue.wake();
    });
    auto start = std::chrono::steady_clock::now();
    CHECK(queue.pop_all(5s).empty());
    CHECK(std::chrono::steady_clock::now() - start < 4s);
    waker.join();
}
