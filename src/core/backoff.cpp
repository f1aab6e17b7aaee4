#include "ppmpi/core/backoff.hpp"

#include <algorithm>

namespace ppmpi {

std::chrono::microseconds Backoff::next_delay(Clock::time_point now, bool spin) {
    if (!idle_since_.set) {
        idle_since_.set = true;
        idle_since_.at = now;
    }
    if (spin && now - idle_since_.at < policy_.spin_for) return std::chrono::microseconds{0};
    // Nothing due soon: the sleeps start where the spin would have ended.
    if (!spin) sleep_ = std::min(std::max(sleep_, policy_.spin_for), policy_.max_sleep);
    auto delay = sleep_;
    sleep_ = std::min(sleep_ * 2, policy_.max_sleep);
    return delay;
}

}  // namespace ppmpi
