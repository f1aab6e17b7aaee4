#include "ppmpi/core/process.hpp"

#include <sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fcntl.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <thread>

namespace ppmpi {
using Clock = std::chrono::steady_clock;
namespace {

// State letter and start time (fields 3 and 22) of /proc/<pid>/stat; false if there is none.
bool read_stat(std::int64_t pid, char& state, std::uint64_t& start_ticks) {
    std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
    std::string text;
    if (!in || !std::getline(in, text)) return false;
    auto close = text.rfind(')');  // the command name may contain spaces and parentheses
    if (close == std::string::npos) return false;
    std::istringstream fields(text.substr(close + 2));
    std::string field;
    fields >> state;
    for (int index = 4; index <= 22 && fields >> field; ++index)
        if (index == 22) start_ticks = std::stoull(field);
    return true;
}

const std::string& host_name_once() {
    static const std::string name = this_host_name();
    return name;
}

}  // namespace

std::string this_host_name() {
    char name[256] = {0};
    gethostname(name, sizeof(name) - 1);
    return name;
}

std::size_t usable_cores() {
    cpu_set_t set;
    CPU_ZERO(&set);
    if (sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
    return static_cast<std::size_t>(std::max(1, CPU_COUNT(&set)));
}

// /proc/loadavg is "0.52 0.58 0.59 3/412 12345": the fourth field is runnable/total. Read with
// pread on a descriptor kept open (an open and a close per read cost more than the read).
bool core_to_spare() {
    static const std::size_t cores = usable_cores();
    static const int fd = ::open("/proc/loadavg", O_RDONLY | O_CLOEXEC);
    thread_local Clock::time_point read_at{};
    thread_local bool spare = true;
    auto now = Clock::now();
    if (fd < 0 || now - read_at < std::chrono::milliseconds(1)) return spare;
    read_at = now;
    char text[128];
    ssize_t n = ::pread(fd, text, sizeof text - 1, 0);
    if (n <= 0) return spare;
    text[n] = '\0';
    unsigned long running = 0;
    if (std::sscanf(text, "%*s %*s %*s %lu/", &running) == 1) spare = running <= cores;
    return spare;
}

ProcessIdentity this_process() {
    ProcessIdentity self;
    self.pid = ::getpid();
    self.host = this_host_name();
    char state = 0;
    read_stat(self.pid, state, self.start_ticks);
    return self;
}

bool judged_here(const ProcessIdentity& process) {
    return process.pid > 0 && process.pid != ::getpid() && process.host == host_name_once();
}

ProcessState process_state(const ProcessIdentity& process) {
    if (!judged_here(process)) return ProcessState::Running;  // cannot tell
    char state = 0;
    std::uint64_t start = 0;
    if (!read_stat(process.pid, state, start)) return ProcessState::Gone;
    if (state == 'Z' || state == 'X') return ProcessState::Gone;
    if (process.start_ticks != 0 && start != process.start_ticks) return ProcessState::Gone;
    return state == 'T' || state == 't' ? ProcessState::Stopped : ProcessState::Running;
}

bool process_alive(const ProcessIdentity& process) {
    return process_state(process) != ProcessState::Gone;
}

bool process_exists(const ProcessIdentity& process) {
    if (!judged_here(process)) return false;
    char state = 0;
    std::uint64_t start = 0;
    if (!read_stat(process.pid, state, start)) return false;
    return process.start_ticks == 0 || start == process.start_ticks;
}

bool kill_process(const ProcessIdentity& process) {
    if (!judged_here(process) || !process_alive(process)) return false;
    return ::kill(static_cast<pid_t>(process.pid), SIGKILL) == 0;
}

namespace {

// Those of `left` that still exist after at most `limit` (checked every 10 ms).
std::vector<ProcessIdentity> wait_ended(std::vector<ProcessIdentity> left,
                                        std::chrono::milliseconds limit) {
    auto deadline = Clock::now() + limit;
    auto ended = [](const ProcessIdentity& process) { return !process_exists(process); };
    for (;;) {
        left.erase(std::remove_if(left.begin(), left.end(), ended), left.end());
        if (left.empty() || Clock::now() >= deadline) return left;
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
}

}  // namespace

std::size_t end_processes(const std::vector<ProcessIdentity>& processes,
                          std::chrono::milliseconds patience) {
    std::vector<ProcessIdentity> left = wait_ended(processes, patience);
    std::size_t killed = 0;
    for (const ProcessIdentity& process : left) killed += kill_process(process) ? 1 : 0;
    wait_ended(std::move(left), patience);
    return killed;
}

ProcessWatch::ProcessWatch() : epoll_(::epoll_create1(EPOLL_CLOEXEC)) {}

ProcessWatch::~ProcessWatch() {
    for (auto& [key, entry] : entries_)
        if (entry.pidfd >= 0) ::close(entry.pidfd);
    if (epoll_ >= 0) ::close(epoll_);
}

// The pidfd is opened first and the identity checked after: if the pid was reused in between,
// the check fails and the worker counts as gone (its own process is).
void ProcessWatch::watch(Key key, const ProcessIdentity& process) {
    forget(key);
    if (!judged_here(process)) return;
    Entry entry{process, -1};
    if (epoll_ >= 0) {
        int fd = static_cast<int>(::syscall(SYS_pidfd_open, static_cast<pid_t>(process.pid), 0));
        epoll_event event{};
        event.events = EPOLLIN;
        event.data.u64 = static_cast<std::uint64_t>(key);
        if (fd >= 0 && ::epoll_ctl(epoll_, EPOLL_CTL_ADD, fd, &event) == 0) {
            entry.pidfd = fd;
        } else if (fd >= 0) {
            ::close(fd);
        }
    }
    if (!process_alive(process)) gone_at_watch_.push_back(key);
    if (entry.pidfd < 0) rotation_.push_back(key);
    entries_.emplace(key, std::move(entry));
}

void ProcessWatch::forget(Key key) {
    auto it = entries_.find(key);
    if (it == entries_.end()) return;
    if (it->second.pidfd >= 0) ::close(it->second.pidfd);  // also leaves the epoll set
    entries_.erase(it);
    rotation_.erase(std::remove(rotation_.begin(), rotation_.end(), key), rotation_.end());
}

std::vector<ProcessWatch::Key> ProcessWatch::exited_by_proc() {
    constexpr std::size_t kSlice = 64;
    std::vector<Key> out;
    for (std::size_t i = 0; i < std::min(kSlice, rotation_.size()); ++i) {
        next_ = next_ % rotation_.size();
        Key key = rotation_[next_++];
        if (!process_alive(entries_.at(key).process)) out.push_back(key);
    }
    return out;
}

std::vector<ProcessWatch::Key> ProcessWatch::exited() {
    std::vector<Key> out;
    out.swap(gone_at_watch_);
    if (epoll_ >= 0) {
        epoll_event events[64];
        int n = ::epoll_wait(epoll_, events, 64, 0);
        for (int i = 0; i < n; ++i) out.push_back(static_cast<Key>(events[i].data.u64));
    }
    for (Key key : exited_by_proc()) out.push_back(key);
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    out.erase(std::remove_if(out.begin(), out.end(), [&](Key k) { return !entries_.count(k); }),
              out.end());
    for (Key key : out) forget(key);
    return out;
}

}  // namespace ppmpi
