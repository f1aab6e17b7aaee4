#include "ppmpi/core/heartbeat.hpp"

namespace ppmpi {

void HeartbeatMonitor::watch(PeerId worker, Clock::duration timeout, Clock::time_point now) {
    watched_[worker] = Watch{timeout, now, {}};
}

void HeartbeatMonitor::heard(PeerId worker, Clock::time_point now) {
    auto it = watched_.find(worker);
    if (it == watched_.end()) return;
    it->second.last_heard = now;
    it->second.postponed_until = {};
}

std::vector<HeartbeatMonitor::Silence> HeartbeatMonitor::silent(Clock::time_point now) const {
    std::vector<Silence> out;
    for (const auto& [worker, watch] : watched_) {
        Clock::duration silent_for = now - watch.last_heard;
        if (silent_for > watch.timeout && now >= watch.postponed_until)
            out.push_back({worker, silent_for, watch.timeout});
    }
    return out;
}

void HeartbeatMonitor::postpone(PeerId worker, Clock::time_point until) {
    auto it = watched_.find(worker);
    if (it != watched_.end()) it->second.postponed_until = until;
}

}  // namespace ppmpi
