// ppmpi/core/doorbell.hpp: sleeping until a peer process sends something, instead of polling for it.
//
// A comm loop must poll (MPI wakes nobody) and, while idle, sleeps with a backoff whose cap
// (2 ms) bounds how late it sees a message. That is ~500 wake-ups a second per idle comm
// thread, each taking a core from a running job for 10-30 µs on the 2-core VM (measured: ~2 %
// of both cores while two workers ran CPU-bound jobs), and up to 2 ms between a job's end on a
// worker and the start of its next job.
// Processes of one host that talk through shared-memory rings (shm_transport.hpp) do better:
// the reader of a ring sleeps on the ring's Doorbell, a futex word in the segment.
//  1. The sleeper reads each bell's `seq`, counts itself in its `sleepers` (seq_cst), then
//     re-checks the rings: if a record is already there, it does not sleep.
//  2. It waits while every `seq` is unchanged, on all its bells and on its own Wakeup (threads
//     of its own process) at once (futex_waitv, Linux >= 5.16), never past a deadline; then
//     it leaves `sleepers`.
//  3. A writer publishes a record, then (seq_cst) reads `sleepers`: if someone sleeps, it adds
//     one to `seq` and wakes the futex. A record published before step 1's re-check is seen
//     there; one published after it finds the sleeper counted: no record is slept through
//     (Dekker's pattern). A writer that finds nobody asleep pays a load of a cache line that
//     nobody is writing.
//  4. A sleeper that only needs urgent records (a worker whose job runs reads its next tasks
//     when the job ends: protocol.hpp, Frame::urgent) sets `only_urgent` before it counts
//     itself; a writer of a record that is not urgent then does not wake it. Whoever ends that
//     need (the job's end) must itself read what came, or wake the sleeper to. A thread of the
//     sleeper's process may end it without a wake-up (Wakeup::widen): it clears `only_urgent`
//     (seq_cst), then reads the records; a writer that still saw the flag set published before.
// A thread dozes this way only while every peer it waits for rings a bell (else it polls as
// before), and never past its next periodic duty (heartbeats, liveness checks, deadlines).
// A peer on another host cannot ring; what it sends arrives on a socket (MPI over TCP). A doze
// may instead wait for any of a set of file descriptors to become readable (poll()), and for
// this process's own Wakeup through an eventfd. A plan with bells and descriptors dozes on the
// bells while a helper thread polls the descriptors and notifies the Wakeup (a hand-off more
// per wake-up that a descriptor brings).
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <vector>

namespace ppmpi {

using Clock = std::chrono::steady_clock;

struct Doorbell {
    std::atomic<std::uint32_t> seq{0};
    std::atomic<std::uint32_t> sleepers{0};
    std::atomic<std::uint32_t> only_urgent{0};  // step 4
};
static_assert(std::atomic<std::uint32_t>::is_always_lock_free, "a futex word must be lock-free");

// Step 3, the writer's side: after it published a record for the bell's sleeper.
void ring(Doorbell& bell, bool urgent = true);

// Whether this kernel can wait on several futexes at once (probed once). If not, nobody
// dozes: the loops poll as they did before doorbells.
bool doze_supported();

// A doze's plan (steps 1-2).
struct Doze {
    static constexpr std::size_t kMaxBells = 127;  // futex_waitv takes 128 words, one is ours
    std::vector<Doorbell*> bells;
    std::vector<int> fds;  // or: descriptors whose readability means a peer sent something
    bool* woke_on_fd = nullptr;  // if set: made true when one of `fds` ended the doze
    std::function<bool()> arrived;  // re-checked once counted: data already waits, don't sleep
    bool only_urgent = false;  // step 4
    std::vector<std::shared_ptr<const void>> keep;  // keeps the bells' memory mapped meanwhile
    Clock::time_point until{};
};

// A sleep that other threads of this process can cut short (and, dozing, peers' bells too).
// One thread waits on it at a time; notify() before the wait is not lost.
class FdWatch;

class Wakeup {
  public:
    Wakeup();
    ~Wakeup();
    Wakeup(const Wakeup&) = delete;
    Wakeup& operator=(const Wakeup&) = delete;
    void notify();
    // Waits up to `delay` or until notify(); true if notified. Clears the signal.
    bool wait_for(std::chrono::microseconds delay);
    // Steps 1-2: waits until notify(), a ring of one of the plan's bells, or plan.until; true
    // unless the time ran out. Clears the signal.
    bool doze(const Doze& plan);
    // Step 4's end, from another thread: the current doze is for every record from now on.
    // False if no doze for urgent records only is under way (then notify() instead).
    bool widen();

  private:
    bool take_signal();
    bool doze_on_fds(const Doze& plan);
    Doorbell word_;          // this process's own futex word
    std::uint32_t seen_ = 0;  // word_.seq when the waiter last looked
    // For dozes on descriptors: notify() writes this eventfd while a dozer counts itself here.
    std::atomic<std::uint32_t> fd_sleepers_{0};
    int event_fd_ = -1;  // made by the first such doze
    std::unique_ptr<FdWatch> watch_;  // made by the first doze on bells and descriptors
    std::mutex urgent_mutex_;
    std::vector<Doorbell*> urgent_only_;  // the bells of a doze for urgent records (widen())
};

// The sockets this process has open now (from /proc/self/fd).
std::vector<int> open_sockets();

}  // namespace ppmpi
