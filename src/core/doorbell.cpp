#include "ppmpi/core/doorbell.hpp"

#include <dirent.h>
#include <linux/futex.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <ctime>
#include <mutex>
#include <thread>
#include <utility>

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

// Polls descriptors for a Wakeup that dozes on bells, and notifies it once one is readable;
// then waits to be armed again (the dozer reads what came before it dozes again).
class FdWatch {
  public:
    explicit FdWatch(Wakeup& owner)
        : owner_(owner), control_(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)),
          thread_([this] { run(); }) {}
    ~FdWatch() {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            stop_ = true;
        }
        poke();
        thread_.join();
        ::close(control_);
    }
    void arm(const std::vector<int>& fds) {
        {
            std::lock_guard<std::mutex> lock(mutex_);
            fds_ = fds;
            armed_ = true;
        }
        poke();
    }
    void disarm() {
        std::lock_guard<std::mutex> lock(mutex_);
        armed_ = false;
    }

  private:
    void poke() {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(control_, &one, sizeof one);
        changed_.notify_all();
    }
    void run() {
        for (;;) {
            std::vector<pollfd> set{{control_, POLLIN, 0}};
            {
                std::unique_lock<std::mutex> lock(mutex_);
                changed_.wait(lock, [&] { return stop_ || armed_; });
                if (stop_) return;
                for (int fd : fds_) set.push_back({fd, POLLIN, 0});
            }
            // Bounded so that a change of descriptors is never missed for long.
            ::poll(set.data(), set.size(), 1000);
            std::uint64_t drained = 0;
            [[maybe_unused]] auto n = ::read(control_, &drained, sizeof drained);
            bool ready = std::any_of(set.begin() + 1, set.end(),
                                     [](const pollfd& p) { return p.revents != 0; });
            if (!ready) continue;
            bool armed = false;
            {
                std::lock_guard<std::mutex> lock(mutex_);
                armed = std::exchange(armed_, false);
            }
            if (armed) owner_.notify();
        }
    }

    Wakeup& owner_;
    int control_;
    std::mutex mutex_;
    std::condition_variable changed_;
    std::vector<int> fds_;
    bool armed_ = false, stop_ = false;
    std::thread thread_;  // last: starts once the rest is made
};

void ring(Doorbell& bell, bool urgent) {
    std::atomic_thread_fence(std::memory_order_seq_cst);  // the record, then the sleepers
    // Acquire: a sleeper counted here set only_urgent before it counted itself.
    if (bell.sleepers.load(std::memory_order_acquire) == 0) return;
    if (!urgent && bell.only_urgent.load(std::memory_order_relaxed) != 0) return;
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

Wakeup::Wakeup() = default;

Wakeup::~Wakeup() {
    if (event_fd_ >= 0) ::close(event_fd_);
}

void Wakeup::notify() {
    word_.seq.fetch_add(1, std::memory_order_seq_cst);
    if (word_.sleepers.load(std::memory_order_seq_cst) > 0)
        futex(word_.seq, FUTEX_WAKE_PRIVATE, 1, nullptr);
    if (fd_sleepers_.load(std::memory_order_seq_cst) > 0) {
        std::uint64_t one = 1;
        [[maybe_unused]] auto n = ::write(event_fd_, &one, sizeof one);
    }
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

// Steps 1-2 with descriptors: counted in fd_sleepers_ (so notify() writes the eventfd), the
// re-check, then poll() on the descriptors and the eventfd until plan.until.
bool Wakeup::doze_on_fds(const Doze& plan) {
    if (event_fd_ < 0) event_fd_ = ::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (event_fd_ < 0) return wait_for(std::chrono::microseconds(2000));
    std::vector<pollfd> fds{{event_fd_, POLLIN, 0}};
    for (int fd : plan.fds) fds.push_back({fd, POLLIN, 0});
    fd_sleepers_.fetch_add(1, std::memory_order_seq_cst);
    bool timed_out = false;
    if (!take_signal() && !(plan.arrived && plan.arrived())) {
        auto left = std::max(plan.until - Clock::now(), Clock::duration::zero());
        timespec timeout = to_timespec(left);
        int r = ::ppoll(fds.data(), fds.size(), &timeout, nullptr);
        timed_out = r == 0;
        bool on_fd = std::any_of(fds.begin() + 1, fds.end(),
                                 [](const pollfd& p) { return p.revents != 0; });
        if (plan.woke_on_fd && on_fd) *plan.woke_on_fd = true;
    }
    fd_sleepers_.fetch_sub(1, std::memory_order_relaxed);
    std::uint64_t drained = 0;
    [[maybe_unused]] auto n = ::read(event_fd_, &drained, sizeof drained);
    if (take_signal()) return true;
    return !timed_out;
}

bool Wakeup::doze(const Doze& plan) {
    if (take_signal()) return true;
    if (!plan.fds.empty() && plan.bells.empty()) return doze_on_fds(plan);
    if (!plan.fds.empty()) {
        if (!watch_) watch_ = std::make_unique<FdWatch>(*this);
        watch_->arm(plan.fds);
        Doze bells = plan;
        bells.fds.clear();
        bool woken = doze(bells);
        watch_->disarm();
        return woken;
    }
    if (plan.bells.size() > Doze::kMaxBells || !doze_supported()) {
        using std::chrono::microseconds;
        auto left = std::chrono::duration_cast<microseconds>(plan.until - Clock::now());
        return wait_for(std::clamp(left, microseconds(1), microseconds(2000)));
    }
    std::vector<futex_waitv> waiters{waiter(word_.seq, seen_, false)};
    for (Doorbell* bell : plan.bells)
        waiters.push_back(waiter(bell->seq, bell->seq.load(std::memory_order_acquire), true));
    word_.sleepers.fetch_add(1, std::memory_order_seq_cst);
    {
        std::lock_guard<std::mutex> lock(urgent_mutex_);
        for (Doorbell* bell : plan.bells) {
            bell->only_urgent.store(plan.only_urgent ? 1 : 0, std::memory_order_seq_cst);
            bell->sleepers.fetch_add(1, std::memory_order_seq_cst);
        }
        if (plan.only_urgent) urgent_only_ = plan.bells;
    }
    bool timed_out = false, failed = false;
    if (!(plan.arrived && plan.arrived())) {
        timespec deadline = to_timespec(plan.until.time_since_epoch());
        long r = ::syscall(SYS_futex_waitv, waiters.data(), waiters.size(), 0, &deadline,
                           CLOCK_MONOTONIC);
        timed_out = r == -1 && errno == ETIMEDOUT;
        failed = r == -1 && errno != ETIMEDOUT && errno != EAGAIN && errno != EINTR;
    }
    {
        std::lock_guard<std::mutex> lock(urgent_mutex_);  // the bells may be unmapped after this
        urgent_only_.clear();
    }
    for (Doorbell* bell : plan.bells) bell->sleepers.fetch_sub(1, std::memory_order_relaxed);
    word_.sleepers.fetch_sub(1, std::memory_order_relaxed);
    if (take_signal()) return true;
    // A call that fails at once (it never should) must not turn the caller's loop into a spin:
    // it sleeps as a poll would.
    if (failed) return wait_for(std::chrono::microseconds(2000));
    return !timed_out;
}

bool Wakeup::widen() {
    std::lock_guard<std::mutex> lock(urgent_mutex_);
    if (urgent_only_.empty()) return false;
    for (Doorbell* bell : urgent_only_) bell->only_urgent.store(0, std::memory_order_seq_cst);
    urgent_only_.clear();
    return true;
}

std::vector<int> open_sockets() {
    std::vector<int> out;
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return out;
    int own = ::dirfd(dir);
    while (dirent* entry = ::readdir(dir)) {
        char* end = nullptr;
        long fd = std::strtol(entry->d_name, &end, 10);
        struct stat info {};
        if (*end != '\0' || fd == own || ::fstat(static_cast<int>(fd), &info) != 0) continue;
        if (S_ISSOCK(info.st_mode)) out.push_back(static_cast<int>(fd));
    }
    ::closedir(dir);
    return out;
}

}  // namespace ppmpi
