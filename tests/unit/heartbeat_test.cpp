// HeartbeatMonitor (time passed in) and the process checks of heartbeat.hpp. The process
// tests fork children that only sleep or _exit(), and always reap them.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <thread>

#include "ppmpi/core/heartbeat.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

namespace {

std::set<WorkerId> silent_set(const HeartbeatMonitor& monitor, Clock::time_point now) {
    auto silent = monitor.silent(now);
    return {silent.begin(), silent.end()};
}

// Field 22 of /proc/<pid>/stat, read independently of the code under test.
std::uint64_t start_ticks_of(pid_t pid) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    REQUIRE(std::getline(in, text));
    std::istringstream fields(text.substr(text.rfind(')') + 2));
    std::string field;
    for (int index = 3; index <= 22; ++index) REQUIRE(fields >> field);
    return std::stoull(field);
}

// A child that sleeps (at most 30 s); killed and reaped by the destructor if still there.
class SleepingChild {
  public:
    SleepingChild() {
        pid_ = fork();
        if (pid_ == 0) {
            sleep(30);
            _exit(0);
        }
        REQUIRE(pid_ > 0);
    }
    ~SleepingChild() {
        if (reaped_) return;
        ::kill(pid_, SIGKILL);
        waitpid(pid_, nullptr, 0);
    }
    pid_t pid() const { return pid_; }
    ProcessIdentity identity() const { return {pid_, start_ticks_of(pid_), this_host_name()}; }
    // Waits up to `limit` for the child to end; its wait status, or -1 if still running.
    int wait_status(std::chrono::milliseconds limit) {
        auto deadline = Clock::now() + limit;
        int status = 0;
        do {
            pid_t r = waitpid(pid_, &status, WNOHANG);
            REQUIRE(r >= 0);
            if (r == pid_) {
                reaped_ = true;
                return status;
            }
            std::this_thread::sleep_for(1ms);
        } while (Clock::now() < deadline);
        return -1;
    }

  private:
    pid_t pid_ = -1;
    bool reaped_ = false;
};

}  // namespace

TEST_CASE("heartbeat: a watched worker is silent only after its timeout", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(7, 2s, t0);
    CHECK(monitor.watching(7));
    CHECK(monitor.silent(t0).empty());
    CHECK(monitor.silent(t0 + 1999ms).empty());
    CHECK(monitor.silent(t0 + 2s).empty());  // exactly the timeout: not yet (>, not >=)
    CHECK(silent_set(monitor, t0 + 2s + 1ns) == std::set<WorkerId>{7});
}

TEST_CASE("heartbeat: hearing from a worker restarts its timeout", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(1, 1s, t0);
    monitor.heard(1, t0 + 800ms);
    CHECK(monitor.silent(t0 + 1500ms).empty());
    CHECK(monitor.silent(t0 + 1800ms).empty());
    CHECK(silent_set(monitor, t0 + 1800ms + 1ns) == std::set<WorkerId>{1});
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
    CHECK(silent_set(monitor, t0 + 2s) == std::set<WorkerId>{1});
    CHECK(silent_set(monitor, t0 + 2600ms) == std::set<WorkerId>{1, 3});
    CHECK(silent_set(monitor, t0 + 3001ms) == std::set<WorkerId>{1, 2, 3});
}

TEST_CASE("heartbeat: forget stops watching; heard does not start it", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(1, 1s, t0);
    monitor.watch(2, 1s, t0);
    monitor.forget(1);
    CHECK_FALSE(monitor.watching(1));
    CHECK(monitor.watching(2));
    CHECK(silent_set(monitor, t0 + 5s) == std::set<WorkerId>{2});
    monitor.forget(1);  // twice is fine
    monitor.heard(9, t0);  // never watched: still not watched
    CHECK_FALSE(monitor.watching(9));
    CHECK(silent_set(monitor, t0 + 5s) == std::set<WorkerId>{2});
}

TEST_CASE("heartbeat: watch again replaces the timeout and the time", "[heartbeat]") {
    HeartbeatMonitor monitor;
    const auto t0 = Clock::now();
    monitor.watch(4, 120s, t0);        // e.g. until its Hello (start_timeout)
    monitor.watch(4, 1s, t0 + 10s);    // then the pool's worker_timeout
    CHECK(monitor.silent(t0 + 11s).empty());
    CHECK(silent_set(monitor, t0 + 11s + 1ms) == std::set<WorkerId>{4});
}

TEST_CASE("process: this process is alive and identified", "[heartbeat][process]") {
    ProcessIdentity self = this_process();
    CHECK(self.pid == ::getpid());
    CHECK(self.host == this_host_name());
    CHECK_FALSE(self.host.empty());
    CHECK(self.start_ticks == start_ticks_of(::getpid()));
    CHECK(process_alive(self));
    ProcessIdentity unknown_start{self.pid, 0, self.host};
    CHECK(process_alive(unknown_start));
}

TEST_CASE("process: a mismatched start time means another process", "[heartbeat][process]") {
    ProcessIdentity self = this_process();
    ProcessIdentity reused{self.pid, self.start_ticks + 1, self.host};
    CHECK_FALSE(process_alive(reused));
    CHECK_FALSE(kill_process(reused));
}

TEST_CASE("process: an exited child is not alive", "[heartbeat][process]") {
    pid_t child = fork();
    if (child == 0) _exit(0);
    REQUIRE(child > 0);
    ProcessIdentity identity{child, 0, this_host_name()};
    // Not yet reaped: a zombie, which counts as gone.
    auto deadline = Clock::now() + 5s;
    while (process_alive(identity) && Clock::now() < deadline) std::this_thread::sleep_for(1ms);
    CHECK_FALSE(process_alive(identity));
    CHECK_FALSE(kill_process(identity));
    REQUIRE(waitpid(child, nullptr, 0) == child);
    CHECK_FALSE(process_alive(identity));  // reaped: no /proc entry at all
    CHECK_FALSE(kill_process(identity));
}

TEST_CASE("process: kill_process never signals this process", "[heartbeat][process]") {
    CHECK_FALSE(kill_process(this_process()));
    CHECK_FALSE(kill_process(ProcessIdentity{::getpid(), 0, this_host_name()}));
    CHECK(process_alive(this_process()));
}

TEST_CASE("process: kill_process kills a live child with SIGKILL", "[heartbeat][process]") {
    SleepingChild child;
    ProcessIdentity identity = child.identity();
    CHECK(process_alive(identity));
    CHECK(kill_process(identity));
    int status = child.wait_status(5000ms);
    REQUIRE(status != -1);
    CHECK(WIFSIGNALED(status));
    CHECK(WTERMSIG(status) == SIGKILL);
    CHECK_FALSE(process_alive(identity));
}

TEST_CASE("process: a wrong start time protects a live child", "[heartbeat][process]") {
    SleepingChild child;
    ProcessIdentity identity = child.identity();
    ++identity.start_ticks;  // as if the pid now belonged to another process
    CHECK_FALSE(kill_process(identity));
    CHECK(child.wait_status(50ms) == -1);  // still running
}

TEST_CASE("process: another host cannot be checked or killed", "[heartbeat][process]") {
    SleepingChild child;
    ProcessIdentity identity = child.identity();
    identity.host = this_host_name() + "-elsewhere.invalid";
    CHECK(process_alive(identity));  // cannot tell: assumed alive
    CHECK_FALSE(kill_process(identity));
    CHECK(child.wait_status(50ms) == -1);  // no signal was sent

    pid_t gone = fork();
    if (gone == 0) _exit(0);
    REQUIRE(gone > 0);
    REQUIRE(waitpid(gone, nullptr, 0) == gone);
    CHECK(process_alive(ProcessIdentity{gone, 0, "elsewhere.invalid"}));
}

TEST_CASE("process: pid 0 or below cannot be checked or killed", "[heartbeat][process]") {
    CHECK(process_alive(ProcessIdentity{0, 0, this_host_name()}));
    CHECK(process_alive(ProcessIdentity{-1, 0, this_host_name()}));
    CHECK_FALSE(kill_process(ProcessIdentity{0, 0, this_host_name()}));
    CHECK_FALSE(kill_process(ProcessIdentity{-1, 0, this_host_name()}));
}
