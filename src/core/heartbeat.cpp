#include "ppmpi/core/heartbeat.hpp"

#include <sched.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <sstream>

namespace ppmpi {

void HeartbeatMonitor::watch(WorkerId worker, Clock::duration timeout, Clock::time_point now) {
    watched_[worker] = Watch{timeout, now};
}

void HeartbeatMonitor::heard(WorkerId worker, Clock::time_point now) {
    auto it = watched_.find(worker);
    if (it != watched_.end()) it->second.last_heard = now;
}

std::vector<WorkerId> HeartbeatMonitor::silent(Clock::time_point now) const {
    std::vector<WorkerId> out;
    for (const auto& [worker, watch] : watched_)
        if (now - watch.last_heard > watch.timeout) out.push_back(worker);
    return out;
}

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

ProcessIdentity this_process() {
    ProcessIdentity self;
    self.pid = ::getpid();
    self.host = this_host_name();
    char state = 0;
    read_stat(self.pid, state, self.start_ticks);
    return self;
}

bool process_alive(const ProcessIdentity& process) {
    if (process.pid <= 0 || process.host != this_host_name()) return true;  // cannot tell
    char state = 0;
    std::uint64_t start = 0;
    if (!read_stat(process.pid, state, start)) return false;
    if (state == 'Z' || state == 'X') return false;
    return process.start_ticks == 0 || start == process.start_ticks;
}

bool process_exists(const ProcessIdentity& process) {
    if (process.pid <= 0 || process.pid == ::getpid() || process.host != this_host_name())
        return false;
    char state = 0;
    std::uint64_t start = 0;
    if (!read_stat(process.pid, state, start)) return false;
    return process.start_ticks == 0 || start == process.start_ticks;
}

bool kill_process(const ProcessIdentity& process) {
    // Never ourselves: in tests, workers are threads of this very process.
    if (process.pid <= 0 || process.pid == ::getpid() || process.host != this_host_name() ||
        !process_alive(process))
        return false;
    return ::kill(static_cast<pid_t>(process.pid), SIGKILL) == 0;
}

}  // namespace ppmpi
