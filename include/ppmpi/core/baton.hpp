// ppmpi/core/baton.hpp: which thread drives a process's comm loop (and so calls MPI) right now.
//
// Each process has a comm thread that owns its comm loop (the master's dispatcher thread, a
// worker's comm thread). A thread that would otherwise sleep until the comm thread hands it
// something can *borrow* the loop instead and run the turns itself for a short window:
//  - the master's Python thread waiting in job() for a result it just submitted;
//  - a worker's job thread between two jobs.
// A message then goes from MPI to the thread that waits for it with no thread wake-up between
// them. Each wake-up costs ~5 µs on the 2-core test machine; four of them were 21 µs of a
// 51 µs round trip (docs/performance.md, "Speed").
//
// The baton is a mutex held for every turn, by whichever thread runs it, so MPI is still called
// by one thread at a time (MPI_THREAD_SERIALIZED) and the loop's state is never shared. While a
// borrower drives, the owner stands down (sleeps on its Wakeup) rather than competing for the
// lock and a core; the borrower wakes it when it leaves. The owner holds the baton alone
// (close()) from the moment it starts ending the session, so no borrower calls MPI after that.
#pragma once

#include <atomic>
#include <chrono>
#include <mutex>
#include <optional>

#include "ppmpi/core/backoff.hpp"

namespace ppmpi {

class Baton {
  public:
    // `owner_wakeup`: the owner's sleep, cut short when the last borrower leaves.
    explicit Baton(Wakeup& owner_wakeup) : owner_wakeup_(owner_wakeup) {}
    Baton(const Baton&) = delete;
    Baton& operator=(const Baton&) = delete;

    // The owner's turn: runs turn() and returns what it returned, or nullopt (not run) while a
    // borrower drives or after close(). Waits for a borrower's turn in progress (short: turns
    // never wait on a peer).
    template <class F> auto owner_turn(F&& turn) -> std::optional<decltype(turn())> {
        if (borrowed()) return std::nullopt;
        std::lock_guard<std::timed_mutex> lock(mutex_);
        if (closed_) return std::nullopt;
        return turn();
    }

    // Ends borrowing for good and returns the held lock: the owner ends the session under it.
    std::unique_lock<std::timed_mutex> close() {
        std::unique_lock<std::timed_mutex> lock(mutex_);
        closed_ = true;
        return lock;
    }

    bool borrowed() const { return borrowers_.load(std::memory_order_relaxed) > 0; }

    // A borrower, for as long as this object lives.
    class Borrow {
      public:
        explicit Borrow(Baton& baton) : baton_(baton) { baton_.borrowers_.fetch_add(1); }
        ~Borrow() {
            if (baton_.borrowers_.fetch_sub(1) == 1 && wake_owner_) baton_.owner_wakeup_.notify();
        }
        // The borrower leaves for work of its own (a worker's next job): the owner need not
        // take over at once, it notices within its stand-down sleep.
        void leave_owner_asleep() { wake_owner_ = false; }
        Borrow(const Borrow&) = delete;
        Borrow& operator=(const Borrow&) = delete;

        // Runs turn() once the baton is free, waiting up to `patience` for the turn in progress
        // (blocked, not spinning: the owner may have been preempted in its turn and needs the
        // core); nullopt if it did not come free in time, or the baton is closed.
        template <class F>
        auto try_turn(F&& turn, std::chrono::microseconds patience)
            -> std::optional<decltype(turn())> {
            std::unique_lock<std::timed_mutex> lock(baton_.mutex_, patience);
            if (!lock.owns_lock() || baton_.closed_) return std::nullopt;
            return turn();
        }

        // Runs turns until done() (true), or until no turn moved anything for `window` or
        // `until` passed (false). turn() returns whether anything moved.
        template <class Done, class Turn>
        bool drive(Done&& done, Turn&& turn, std::chrono::microseconds window,
                   Clock::time_point until = Clock::time_point::max()) {
            Clock::time_point last_moved = Clock::now();
            while (!done()) {
                auto moved = try_turn(turn, window);
                Clock::time_point now = Clock::now();
                if (moved.value_or(false)) {
                    last_moved = now;
                } else if (now - last_moved > window || now > until) {
                    return false;
                }
            }
            return true;
        }

      private:
        Baton& baton_;
        bool wake_owner_ = true;
    };

  private:
    Wakeup& owner_wakeup_;
    std::timed_mutex mutex_;
    bool closed_ = false;  // guarded by mutex_
    std::atomic<int> borrowers_{0};
};

}  // namespace ppmpi
