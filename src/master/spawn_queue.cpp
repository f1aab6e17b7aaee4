#include "ppmpi/master/spawn_queue.hpp"

#include "ppmpi/core/log.hpp"

#include <algorithm>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace ppmpi {

struct SpawnQueue::Attempt {
    PeerId peer = -1;
    int number = 0; // 1 for the peer's first attempt
    std::string name;
    Clock::time_point deadline;
    std::mutex mutex;
    bool done = false; // under mutex, with what follows
    Handle handle;
    std::string error; // empty: it succeeded

    bool finished() {
        std::lock_guard<std::mutex> lock(mutex);
        return done;
    }
};

namespace {
std::string seconds_text(std::chrono::milliseconds bound) {
    return std::to_string(bound.count() / 1000) + "." + std::to_string(bound.count() % 1000 / 100) +
           " s";
}
} // namespace

SpawnQueue::SpawnQueue(LaunchFn launch, Options options)
    : launch_(std::move(launch)), options_(options), tag_(std::to_string(::getpid())) {}

SpawnQueue::~SpawnQueue() = default;

void SpawnQueue::request(PeerId peer) {
    wanted_[peer] = Wanted{};
    queue_.push_back(peer);
}

void SpawnQueue::cancel(PeerId peer) {
    wanted_.erase(peer);
}

std::size_t SpawnQueue::stuck() const {
    return static_cast<std::size_t>(std::count_if(abandoned_.begin(), abandoned_.end(),
                                                  [](const auto& a) { return !a->finished(); }));
}

std::vector<SpawnQueue::Event> SpawnQueue::poll(Clock::time_point now) {
    std::vector<Event> events;
    if (live_ && live_->finished()) {
        auto attempt = std::move(live_);
        live_.reset();
        settle(attempt, true, events);
    } else if (live_ && now >= live_->deadline) {
        auto attempt = std::move(live_);
        live_.reset();
        abandoned_.push_back(attempt);
        ++abandoned_total_;
        auto bound = std::chrono::duration_cast<std::chrono::milliseconds>(
            options_.first_bound * (1 << (attempt->number - 1)));
        give_up_or_retry(attempt->peer,
                         "MPI_Comm_spawn did not return within " + seconds_text(bound) +
                             " (Open MPI 4.1 can leave a spawn hanging in PMIx; openpmix#2735)",
                         events);
    }
    for (auto it = abandoned_.begin(); it != abandoned_.end();) {
        if (!(*it)->finished()) {
            ++it;
            continue;
        }
        auto attempt = *it;
        it = abandoned_.erase(it);
        settle(attempt, false, events);
    }
    start_next(now);
    return events;
}

// A finished attempt: the peer's process if the peer still waits for one, else a Surplus.
// A failure counts only while it is the peer's live attempt (an abandoned one was counted
// when it was abandoned).
void SpawnQueue::settle(const std::shared_ptr<Attempt>& attempt,
                        bool was_live,
                        std::vector<Event>& events) {
    if (!attempt->error.empty()) {
        log_debug("spawn attempt " + attempt->name + " failed: " + attempt->error);
        if (was_live) give_up_or_retry(attempt->peer, attempt->error, events);
        return;
    }
    auto it = wanted_.find(attempt->peer);
    Event event;
    event.peer = attempt->peer;
    event.handle = std::move(attempt->handle);
    if (it == wanted_.end()) {
        event.kind = Event::Kind::Surplus;
        log_debug("spawn attempt " + attempt->name + " returned after it was given up");
    } else {
        wanted_.erase(it); // a retry still queued for it is skipped; a running one is surplus
        event.kind = Event::Kind::Started;
        if (attempt->number > 1 || !was_live)
            log_warning("a worker started on attempt " + std::to_string(attempt->number) +
                        " of its launch (see the warning before)");
    }
    events.push_back(std::move(event));
}

void SpawnQueue::give_up_or_retry(PeerId peer, const std::string& why, std::vector<Event>& events) {
    auto it = wanted_.find(peer);
    if (it == wanted_.end()) return; // cancelled, or started by an earlier attempt
    if (it->second.attempts >= options_.max_attempts) {
        std::string error =
            why + "; gave up after " + std::to_string(it->second.attempts) + " attempts";
        log_warning("could not start a worker: " + error);
        events.push_back(Event{Event::Kind::Failed, peer, {}, error});
        wanted_.erase(it);
        return;
    }
    log_warning("starting a worker: " + why + "; trying again (attempt " +
                std::to_string(it->second.attempts + 1) + " of " +
                std::to_string(options_.max_attempts) + ")");
    queue_.push_front(peer); // before later requests: launches stay in request order
}

void SpawnQueue::start_next(Clock::time_point now) {
    while (!live_ && !queue_.empty()) {
        PeerId peer = queue_.front();
        queue_.pop_front();
        auto it = wanted_.find(peer);
        if (it == wanted_.end()) continue; // cancelled or already started
        int number = ++it->second.attempts;
        auto attempt = std::make_shared<Attempt>();
        attempt->peer = peer;
        attempt->number = number;
        attempt->name = tag_ + "-" + std::to_string(next_attempt_++);
        attempt->deadline = now + options_.first_bound * (1 << (number - 1));
        live_ = attempt;
        run(attempt);
    }
}

// The thread gets its own copy of the launch function and shares only the Attempt, so an
// attempt that returns after this queue is gone touches nothing freed.
void SpawnQueue::run(const std::shared_ptr<Attempt>& attempt) {
    auto body = [launch = launch_, attempt] {
        Handle handle;
        std::string error;
        try {
            handle = launch(attempt->name);
        } catch (const std::exception& e) {
            error = e.what();
            if (error.empty()) error = "the launch failed";
        }
        std::lock_guard<std::mutex> lock(attempt->mutex);
        attempt->handle = std::move(handle);
        attempt->error = std::move(error);
        attempt->done = true;
    };
    if (options_.threaded) {
        std::thread(std::move(body)).detach();
    } else {
        body();
    }
}

} // namespace ppmpi
