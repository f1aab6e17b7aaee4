// The process checks of process.hpp and ProcessWatch. The tests fork children that only sleep or
// _exit(), and always reap them.
#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <fstream>
#include <sstream>
#include <thread>

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/core/exit_watch.hpp"
#include "ppmpi/core/process.hpp"

using namespace ppmpi;
using namespace std::chrono_literals;

namespace {


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

TEST_CASE("process: this process is alive and identified", "[process]") {
    ProcessIdentity self = this_process();
    CHECK(self.pid == ::getpid());
    CHECK(self.host == this_host_name());
    CHECK_FALSE(self.host.empty());
    CHECK(self.start_ticks == start_ticks_of(::getpid()));
    CHECK(process_alive(self));
    ProcessIdentity unknown_start{self.pid, 0, self.host};
    CHECK(process_alive(unknown_start));
}

TEST_CASE("process: a mismatched start time means another process", "[process]") {
    SleepingChild child;
    ProcessIdentity reused = child.identity();
    ++reused.start_ticks;
    CHECK_FALSE(process_alive(reused));
    CHECK(process_state(reused) == ProcessState::Gone);
    CHECK_FALSE(kill_process(reused));
}

TEST_CASE("process: an exited child is not alive", "[process]") {
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

TEST_CASE("process: kill_process never signals this process", "[process]") {
    CHECK_FALSE(kill_process(this_process()));
    CHECK_FALSE(kill_process(ProcessIdentity{::getpid(), 0, this_host_name()}));
    CHECK(process_alive(this_process()));
}

TEST_CASE("process: kill_process kills a live child with SIGKILL", "[process]") {
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

TEST_CASE("process: a wrong start time protects a live child", "[process]") {
    SleepingChild child;
    ProcessIdentity identity = child.identity();
    ++identity.start_ticks;  // as if the pid now belonged to another process
    CHECK_FALSE(kill_process(identity));
    CHECK(child.wait_status(50ms) == -1);  // still running
}

TEST_CASE("process: another host cannot be checked or killed", "[process]") {
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

TEST_CASE("process: pid 0 or below cannot be checked or killed", "[process]") {
    CHECK(process_alive(ProcessIdentity{0, 0, this_host_name()}));
    CHECK(process_alive(ProcessIdentity{-1, 0, this_host_name()}));
    CHECK_FALSE(kill_process(ProcessIdentity{0, 0, this_host_name()}));
    CHECK_FALSE(kill_process(ProcessIdentity{-1, 0, this_host_name()}));
}

TEST_CASE("process: a stopped child is Stopped until it continues", "[process]") {
    SleepingChild child;
    ProcessIdentity identity = child.identity();
    CHECK(process_state(identity) == ProcessState::Running);  // sleeping counts as running
    REQUIRE(::kill(child.pid(), SIGSTOP) == 0);
    auto deadline = Clock::now() + 5s;
    while (process_state(identity) != ProcessState::Stopped && Clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    CHECK(process_state(identity) == ProcessState::Stopped);
    CHECK(process_alive(identity));
    REQUIRE(::kill(child.pid(), SIGCONT) == 0);
    while (process_state(identity) != ProcessState::Running && Clock::now() < deadline)
        std::this_thread::sleep_for(1ms);
    CHECK(process_state(identity) == ProcessState::Running);
    CHECK(process_state(this_process()) == ProcessState::Running);  // cannot tell: running
}

TEST_CASE("process: end_processes waits for those that end and kills the one left", "[process]") {
    pid_t quick = fork();
    if (quick == 0) {
        usleep(100 * 1000);
        _exit(0);
    }
    pid_t stuck = fork();
    if (stuck == 0) {
        sleep(30);
        _exit(0);
    }
    REQUIRE((quick > 0 && stuck > 0));
    std::vector<ProcessIdentity> both{{quick, start_ticks_of(quick), this_host_name()},
                                      {stuck, start_ticks_of(stuck), this_host_name()}};
    // This test is their parent: a thread reaps them as they end, as Open MPI's daemon does
    // for workers (a zombie still exists). Bounded by the children's own sleeps.
    int statuses[2] = {-1, -1};
    std::thread reaper([&] {
        waitpid(quick, &statuses[0], 0);
        waitpid(stuck, &statuses[1], 0);
    });
    auto started = Clock::now();
    std::size_t killed = end_processes(both, 500ms);
    auto took = Clock::now() - started;
    reaper.join();
    CHECK(killed == 1);
    CHECK(took >= 500ms);  // the patience was given in full to the one that did not end
    CHECK((WIFEXITED(statuses[0]) && WEXITSTATUS(statuses[0]) == 0));
    CHECK((WIFSIGNALED(statuses[1]) && WTERMSIG(statuses[1]) == SIGKILL));
    CHECK_FALSE(process_exists(both[1]));
}

TEST_CASE("process watch: an exit is reported once, for its key only", "[process]") {
    ProcessWatch watch;
    SleepingChild ending, staying;
    watch.watch(7, ending.identity());
    watch.watch(8, staying.identity());
    watch.watch(9, this_process());  // cannot be judged here: not watched
    CHECK(watch.size() == 2);
    CHECK(watch.exited().empty());
    REQUIRE(::kill(ending.pid(), SIGKILL) == 0);
    std::vector<ProcessWatch::Key> exited;
    auto deadline = Clock::now() + 5s;
    while (exited.empty() && Clock::now() < deadline) {
        exited = watch.exited();
        std::this_thread::sleep_for(1ms);
    }
    CHECK(exited == std::vector<ProcessWatch::Key>{7});
    CHECK(watch.exited().empty());  // once
    CHECK(watch.size() == 1);
    watch.forget(8);
    REQUIRE(::kill(staying.pid(), SIGKILL) == 0);
    std::this_thread::sleep_for(50ms);
    CHECK(watch.exited().empty());  // forgotten
}

TEST_CASE("process watch: a process gone before it was watched is reported", "[process]") {
    ProcessWatch watch;
    SleepingChild child;
    ProcessIdentity identity = child.identity();
    ++identity.start_ticks;  // the pid now belongs to another process
    watch.watch(3, identity);
    CHECK(watch.exited() == std::vector<ProcessWatch::Key>{3});
}

TEST_CASE("exit watch: a wait past its bound ends the process with the status; one done in "
          "time does not",
          "[process]") {
    auto run_child = [](int wait_ms) {
        pid_t child = ::fork();
        if (child == 0) {
            {
                ppmpi::ExitUnlessDoneWithin bounded(std::chrono::seconds(1), 7, "test: too long");
                std::this_thread::sleep_for(std::chrono::milliseconds(wait_ms));
            }
            std::_Exit(0);
        }
        int status = -1;
        for (int i = 0; i < 1000 && ::waitpid(child, &status, WNOHANG) == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    };
    CHECK(run_child(3000) == 7);
    CHECK(run_child(10) == 0);
}
