// ThreadCpuWait (cpu_wait.hpp): a thread that shares one CPU with a spinning one waits for it.
#include <catch2/catch.hpp>

#include <pthread.h>
#include <sched.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

#include "ppmpi/core/cpu_wait.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

namespace {

void pin_to(int cpu) {
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    REQUIRE(pthread_setaffinity_np(pthread_self(), sizeof set, &set) == 0);
}

void spin_for(std::chrono::milliseconds wall) {
    auto until = std::chrono::steady_clock::now() + wall;
    while (std::chrono::steady_clock::now() < until) {
    }
}

int a_cpu_of_this_process() {
    cpu_set_t set;
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    for (int cpu = 0; cpu < CPU_SETSIZE; ++cpu)
        if (CPU_ISSET(cpu, &set)) return cpu;
    FAIL("no CPU");
    return 0;
}

}  // namespace

TEST_CASE("cpu wait: a thread alone on its CPU barely waits, one sharing it waits", "[cpu_wait]") {
    if (access("/proc/thread-self/schedstat", R_OK) != 0) {
        WARN("no /proc/thread-self/schedstat here: ThreadCpuWait reads 0");
        CHECK(ThreadCpuWait().seconds() == 0.0);
        return;
    }
    int cpu = a_cpu_of_this_process();
    double alone = 0.0, shared = 0.0;
    std::thread measured([&] {
        pin_to(cpu);
        ThreadCpuWait wait;
        double start = wait.seconds();
        CHECK(start >= 0.0);
        std::this_thread::sleep_for(100ms);  // sleeping is not waiting for a CPU
        alone = wait.seconds() - start;
        std::atomic<bool> stop{false};
        std::thread rival([&] {
            pin_to(cpu);
            while (!stop.load()) {
            }
        });
        double before = wait.seconds();
        spin_for(300ms);  // the CPU is shared half and half: ~150 ms of waiting
        shared = wait.seconds() - before;
        stop = true;
        rival.join();
    });
    measured.join();
    CHECK(alone < 0.05);
    CHECK(shared > 0.05);
    CHECK(shared < 1.0);  // waits are bounded by the 300 ms of wall time: catches a wrong unit
}
