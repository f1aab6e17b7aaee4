#include "ppmpi/backoff.hpp"

#include <algorithm>
#include <thread>

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

void Wakeup::notify() {
    {
        std::lock_guard<std::mutex> lock(mutex_);
        signalled_ = true;
    }
    cv_.notify_one();
}

bool Wakeup::wait_for(std::chrono::microseconds delay) {
    std::unique_lock<std::mutex> lock(mutex_);
    if (delay.count() == 0 && !signalled_) {
        // Spinning: let a thread that was just woken on this core run first.
        lock.unlock();
        std::this_thread::yield();
        lock.lock();
    }
    if (delay.count() > 0 && !signalled_) cv_.wait_for(lock, delay, [&] { return signalled_; });
    bool was = signalled_;
    signalled_ = false;
    return was;
}

}  // namespace ppmpi
