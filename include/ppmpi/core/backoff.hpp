// ppmpi/core/backoff.hpp: how the comm threads idle without burning a core.
//
// A blocked MPI call spins a full core on this Open MPI, so every comm loop polls (Iprobe/Test)
// and, when a poll finds nothing, waits a little before the next one: first a short spin phase
// (so a reply that is microseconds away is seen at once; each spin yields the core, so a thread
// just woken on it runs first), then sleeps that double up to a cap (so an idle rank costs well
// under 5 % of a core). Any activity resets the backoff.
//
// The sleep is a wait on a Wakeup: another thread of the same process (a Python thread
// submitting a job, the job thread finishing one) cuts it short, so local events are never
// delayed by the backoff, only remote ones are; and once the backoff reaches its cap, a thread
// whose peers all ring doorbells (doorbell.hpp) dozes on them instead.
#pragma once

#include <chrono>
#include <cstdint>

#include "ppmpi/core/doorbell.hpp"

namespace ppmpi {

struct BackoffPolicy {
    std::chrono::microseconds spin_for{250};   // keep polling without sleeping this long
    std::chrono::microseconds first_sleep{20};  // then sleep this long, doubling ...
    std::chrono::microseconds max_sleep{2000};  // ... up to this cap
};

class Backoff {
  public:
    explicit Backoff(BackoffPolicy policy = {}) : policy_(policy) {}

    // Something happened: poll eagerly again.
    void reset() { idle_since_.reset(); sleep_ = policy_.first_sleep; }

    // Nothing happened at `now`. Returns how long to wait before polling again (0 = spin).
    // spin=false: nothing is expected soon: no spin, and sleeps of at least spin_for.
    std::chrono::microseconds next_delay(Clock::time_point now, bool spin = true);

    const BackoffPolicy& policy() const { return policy_; }

  private:
    struct IdleStart {
        bool set = false;
        Clock::time_point at{};
        void reset() { set = false; }
    };
    BackoffPolicy policy_;
    IdleStart idle_since_;
    std::chrono::microseconds sleep_ = policy_.first_sleep;
};

}  // namespace ppmpi
