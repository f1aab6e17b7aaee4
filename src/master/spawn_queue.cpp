#include "ppmpi/master/spawn_queue.hpp"

#include "ppmpi/core/log.hpp"

#include <algorithm>
#include <mutex>
#include <thread>
#include <unistd.h>

namespace ppmpi {

struct SpawnQueue::Attempt {
    std::uint64_t launch = 0;
    std::vector<PeerId> peers;
    int number = 0; // 1 for the launch's first attempt
    std::string name;
    Clock::time_point deadline;
    Clock::duration bound{};
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
std::string seconds_text(SpawnQueue::Clock::duration bound) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(bound).count();
    return std::to_string(ms / 1000) + "." + std::to_string(ms % 1000 / 100) + " s";
}

std::string workers_text(std::size_t n) {
    return n == 1 ? "a worker" : std::to_string(n) + " workers";
}
} // namespace

SpawnQueue::SpawnQueue(LaunchFn launch, Options options)
    : launch_(std::move(launch)), options_(options), tag_(std::to_string(::getpid())) {}

SpawnQueue::~SpawnQueue() = default;

void SpawnQueue::request(std::vector<PeerId> peers) {
    if (peers.empty()) return;
    std::uint64_t id = next_launch_++;
    launches_[id] = Launch{id, std::move(peers), 0};
    queue_.push_back(id);
}

void SpawnQueue::cancel(PeerId peer) {
    for (const auto& [id, launch] : launches_)
        if (std::find(launch.peers.begin(), launch.peers.end(), peer) != launch.peers.end())
            unwanted_.insert(peer);
}

bool SpawnQueue::wanted(const Launch& launch) const {
    return std::any_of(launch.peers.begin(), launch.peers.end(),
                       [&](PeerId peer) { return !unwanted_.count(peer); });
}

// Step 2: a launch of k processes gets first_bound + (k - 1) x per_process, doubled per attempt.
SpawnQueue::Clock::duration SpawnQueue::bound(const Launch& launch) const {
    auto one = options_.first_bound +
               options_.per_process * static_cast<long>(launch.peers.size() - 1);
    return one * (1 << (launch.attempts - 1));
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
        give_up_or_retry(attempt->launch,
                         "MPI_Comm_spawn did not return within " + seconds_text(attempt->bound) +
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

// Step 3: a finished attempt gives its launch its processes if the launch still waits for
// them, else they are a Surplus. A failure counts only while it is the live attempt (an
// abandoned one was counted when it was abandoned).
void SpawnQueue::settle(const std::shared_ptr<Attempt>& attempt,
                        bool was_live,
                        std::vector<Event>& events) {
    if (!attempt->error.empty()) {
        log_debug("spawn attempt " + attempt->name + " failed: " + attempt->error);
        if (was_live) give_up_or_retry(attempt->launch, attempt->error, events);
        return;
    }
    Event event;
    event.processes = attempt->peers.size();
    event.handle = std::move(attempt->handle);
    auto it = launches_.find(attempt->launch);
    if (it == launches_.end()) {
        event.kind = Event::Kind::Surplus;
        log_debug("spawn attempt " + attempt->name + " returned after it was given up");
        events.push_back(std::move(event));
        return;
    }
    event.kind = Event::Kind::Started;
    event.peers = it->second.peers;
    for (PeerId peer : event.peers)
        if (unwanted_.erase(peer)) event.unwanted.push_back(peer);
    launches_.erase(it); // a retry still queued for it is skipped; a running one is surplus
    if (attempt->number > 1 || !was_live)
        log_warning(workers_text(event.processes) + " started on attempt " +
                    std::to_string(attempt->number) + " of its launch (see the warning before)");
    events.push_back(std::move(event));
}

void SpawnQueue::give_up_or_retry(std::uint64_t id, const std::string& why,
                                  std::vector<Event>& events) {
    auto it = launches_.find(id);
    if (it == launches_.end()) return; // started by an earlier attempt
    Launch& launch = it->second;
    if (launch.attempts >= options_.max_attempts || !wanted(launch)) {
        std::string error =
            why + "; gave up after " + std::to_string(launch.attempts) + " attempts";
        log_warning("could not start " + workers_text(launch.peers.size()) + ": " + error);
        Event event{Event::Kind::Failed, launch.peers, {}, 0, {}, error};
        for (PeerId peer : launch.peers) unwanted_.erase(peer);
        launches_.erase(it);
        events.push_back(std::move(event));
        return;
    }
    log_warning("starting " + workers_text(launch.peers.size()) + ": " + why +
                "; trying again (attempt " + std::to_string(launch.attempts + 1) + " of " +
                std::to_string(options_.max_attempts) + ")");
    queue_.push_front(id); // before later requests: launches stay in request order
}

void SpawnQueue::start_next(Clock::time_point now) {
    while (!live_ && !queue_.empty()) {
        std::uint64_t id = queue_.front();
        queue_.pop_front();
        auto it = launches_.find(id);
        if (it == launches_.end()) continue; // already started
        Launch& launch = it->second;
        if (!wanted(launch)) { // every peer of it was cancelled
            for (PeerId peer : launch.peers) unwanted_.erase(peer);
            launches_.erase(it);
            continue;
        }
        ++launch.attempts;
        auto attempt = std::make_shared<Attempt>();
        attempt->launch = id;
        attempt->peers = launch.peers;
        attempt->number = launch.attempts;
        attempt->name = tag_ + "-" + std::to_string(next_attempt_++);
        attempt->bound = bound(launch);
        attempt->deadline = now + attempt->bound;
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
            handle = launch(attempt->name, attempt->peers.size());
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
