#include "ppmpi/core/doorbell.hpp"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <ctime>
#include <thread>

namespace ppmpi {
namespace {

static_assert(std::is_same_v<Clock, std::chrono::steady_clock>,
              "futex deadlines are CLOCK_MONOTONIC, which steady_clock reads on Linux");

std::uint32_t* futex_word(std::atomic<std::uint32_t>& word) {
    return reinterpret_cast<std::uint32_t*>(&word);
}

long futex(std::atomic<std::uint32_t>& word, int op, std::uint32_t value, const timespec* timeout) {
    return ::syscall(SYS_futex, futex_word(word), op, value, timeout, nullptr, 0);
}

timespec to_timespec(std::chrono::nanoseconds ns) {
    auto secs = std::chrono::duration_cast<std::chrono::seconds>(ns);
    return timespec{static_cast<time_t>(secs.count()), static_cast<long>((ns - secs).count())};
}

futex_waitv waiter(std::atomic<std::uint32_t>& word, std::uint32_t expected, bool shared) {
    futex_waitv w{};
    w.val = expected;
    w.uaddr = reinterpret_cast<std::uintptr_t>(futex_word(word));
    w.flags = FUTEX_32 | (shared ? 0 : FUTEX_PRIVATE_FLAG);
    return w;
}

}  // namespace

void ring(Doorbell& bell) {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the record, then the sleepers
    if (bell.sleepers.load(std::memory_order_relaxed) == 0) return;
    bell.seq.fetch_add(1, std::memory_order_seq_cst);
    futex(bell.seq, FUTEX_WAKE, INT_MAX, nullptr);  // shared: the sleeper is another process
}

bool doze_supported() {
    // No waiters is EINVAL where the call exists; ENOSYS (old kernel) or EPERM (a seccomp
    // filter) where it does not.
    static const bool supported = [] {
        long r = ::syscall(SYS_futex_waitv, nullptr, 0, 0, nullptr, CLOCK_MONOTONIC);
        return r == -1 && errno == EINVAL;
    }();
    return supported;
}

bool Wakeup::take_signal() {
    std::uint32_t now = word_.seq.load(std::memory_order_acquire);
    if (now == seen_) return false;
    seen_ = now;
    return true;
}

void Wakeup::notify() {
    word_.seq.fetch_add(1, std::memory_order_seq_cst);
    if (word_.sleepers.load(std::memory_order_seq_cst) > 0)
        futex(word_.seq, FUTEX_WAKE_PRIVATE, 1, nullptr);
}

bool Wakeup::wait_for(std::chrono::microseconds delay) {
    if (take_signal()) return true;
    if (delay.count() <= 0) {
        // Spinning: let a thread that was just woken on this core run first.
        std::this_thread::yield();
        return take_signal();
    }
    word_.sleepers.fetch_add(1, std::memory_order_seq_cst);
    timespec timeout = to_timespec(delay);
    futex(word_.seq, FUTEX_WAIT_PRIVATE, seen_, &timeout);  // returns at once if seq moved
    word_.sleepers.fetch_sub(1, std::memory_order_relaxed);
    return take_signal();
}

bool Wakeup::doze(const Doze& plan) {
    if (take_signal()) return true;
    if (plan.bells.size() > Doze::kMaxBells || !doze_supported()) {
        using std::chrono::microseconds;
        auto left = std::chrono::duration_cast<microseconds>(plan.until - Clock::now());
        return wait_for(std::clamp(left, microseconds(1), microseconds(2000)));
    }
    std::vector<futex_waitv> waiters{waiter(word_.seq, seen_, false)};
    for (Doorbell* bell : plan.bells)
        waiters.push_back(waiter(bell->seq, bell->seq.load(std::memory_order_acquire), true));
    word_.sleepers.fetch_add(1, std::memory_order_seq_cst);
    for (Doorbell* bell : plan.bells) bell->sleepers.fetch_add(1, std::memory_order_seq_cst);
    bool timed_out = false, failed = false;
    if (!(plan.arrived && plan.arrived())) {
        timespec deadline = to_timespec(plan.until.time_since_epoch());
        long r = ::syscall(SYS_futex_waitv, waiters.data(), waiters.size(), 0, &deadline,
                           CLOCK_MONOTONIC);
        timed_out = r == -1 && errno == ETIMEDOUT;
        failed = r == -1 && errno != ETIMEDOUT && errno != EAGAIN && errno != EINTR;
    }
    for (Doorbell* bell : plan.bells) bell->sleepers.fetch_sub(1, std::memory_order_relaxed);
    word_.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (take_signal()) return true;
    // A call that fails at once (it never should) must not turn the caller's loop into a spin:
    // it sleeps as a poll would.
    if (failed) return wait_for(std::chrono::microseconds(2000));
    return !timed_out;
}

}  // namespace ppmpi
