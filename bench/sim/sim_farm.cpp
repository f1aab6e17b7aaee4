#include "sim_farm.hpp"

#include <unistd.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/heartbeat.hpp"
#include "ppmpi/core/process.hpp"

namespace ppmpi_bench {

void SimNetwork::to_farm(Envelope envelope) {
    std::lock_guard<std::mutex> lock(mutex_);
    farm_inbox_.push_back(std::move(envelope));
}

void SimNetwork::to_master(std::deque<Envelope>& envelopes) {
    std::lock_guard<std::mutex> lock(mutex_);
    for (Envelope& envelope : envelopes) master_inbox_.push_back(std::move(envelope));
    envelopes.clear();
}

// The master takes what has arrived in one go and hands it out from its own queue: one lock per
// batch, not per frame (the lock is the simulation's, not the master's cost).
std::optional<Envelope> SimNetwork::master_receive() {
    if (master_taken_.empty()) {
        std::lock_guard<std::mutex> lock(mutex_);
        master_taken_.swap(master_inbox_);
    }
    if (master_taken_.empty()) return std::nullopt;
    Envelope envelope = std::move(master_taken_.front());
    master_taken_.pop_front();
    return envelope;
}

// The farm polls: a wake-up per frame would be paid by the master's thread (a futex call in
// each post), which no real transport costs it.
std::deque<Envelope> SimNetwork::farm_receive(std::chrono::microseconds wait) {
    std::deque<Envelope> out;
    {
        std::lock_guard<std::mutex> lock(mutex_);
        out.swap(farm_inbox_);
    }
    if (out.empty()) std::this_thread::sleep_for(wait);
    return out;
}

void SimTransport::post(PeerId peer, Frame frame) {
    net_->to_farm(Envelope{peer, std::move(frame.bytes), std::move(frame.buffers)});
}

std::vector<PeerId> SimLauncher::static_peers() {
    std::vector<PeerId> peers;
    for (std::size_t rank = 1; rank <= workers_; ++rank) peers.push_back(static_cast<PeerId>(rank));
    return peers;
}

std::vector<PeerId> SimLauncher::spawn(std::size_t) {
    throw PpmpiError("the simulated cluster has only its world ranks");
}

Farm::Farm(std::shared_ptr<SimNetwork> net, std::size_t workers, double job_seconds)
    : net_(std::move(net)), workers_(workers), job_seconds_(job_seconds),
      interval_ms_(workers + 1, 0), last_sent_(workers + 1) {
    // Every worker says Hello as a process of this host would (this process stands in for it:
    // the master watches it as it watches a local worker's process).
    ProcessIdentity self = this_process();
    Bytes hello = encode_frame({Message{Hello{self.pid, self.start_ticks, self.host}, {}}});
    for (std::size_t rank = 1; rank <= workers_; ++rank)
        outgoing_.push_back(Envelope{static_cast<PeerId>(rank), hello});
    net_->to_master(outgoing_);
    thread_ = std::thread(&Farm::run, this);
}

Farm::~Farm() {
    stop_ = true;
    net_->to_farm(Envelope{});  // wakes it
    thread_.join();
}

// One frame from the master to one worker: Results to send back, or its Goodbye.
void Farm::answer(const Envelope& envelope, std::vector<Message>& results, PeerId& goodbye) {
    if (envelope.peer <= 0 || static_cast<std::size_t>(envelope.peer) > workers_) return;
    for (Message& message : decode_frame(envelope.frame, {})) {
        if (auto* task = std::get_if<Task>(&message.header)) {
            results.push_back(
                Message{Result{task->job_id, ResultStatus::Ok, job_seconds_.load()}, "r"});
        } else if (auto* welcome = std::get_if<Welcome>(&message.header)) {
            if (interval_ms_[envelope.peer] == 0)
                heartbeat_due_.push_back({Clock::now() + std::chrono::milliseconds(
                                                             welcome->heartbeat_ms),
                                          envelope.peer});
            interval_ms_[envelope.peer] = welcome->heartbeat_ms;
        } else if (auto* shutdown = std::get_if<Shutdown>(&message.header)) {
            interval_ms_[envelope.peer] = -1;  // no more heartbeats
            if (!shutdown->immediate) goodbye = envelope.peer;
        }
    }
}

// As a real worker does, only when it sent nothing else since its last heartbeat.
void Farm::send_heartbeats(Clock::time_point now) {
    static const Bytes heartbeat = encode_frame({Message{Heartbeat{}, {}}});
    while (!heartbeat_due_.empty() && heartbeat_due_.front().at <= now) {
        Due due = heartbeat_due_.front();
        heartbeat_due_.pop_front();
        std::int32_t interval = interval_ms_[due.peer];
        if (interval <= 0) continue;
        auto last = last_sent_[due.peer];
        if (now - last < std::chrono::milliseconds(interval)) {
            heartbeat_due_.push_back({last + std::chrono::milliseconds(interval), due.peer});
            continue;
        }
        outgoing_.push_back(Envelope{due.peer, heartbeat});
        ++heartbeats_;
        heartbeat_due_.push_back({due.at + std::chrono::milliseconds(interval), due.peer});
    }
}

// Each result leaves in a frame of its own, as a real worker sends it (worker.hpp).
void Farm::run() {
    while (!stop_) {
        for (Envelope& envelope : net_->farm_receive(std::chrono::microseconds(50))) {
            std::vector<Message> results;
            PeerId goodbye = 0;
            answer(envelope, results, goodbye);
            for (Message& result : results)
                outgoing_.push_back(Envelope{envelope.peer, encode_frame({std::move(result)})});
            if (!results.empty()) last_sent_[envelope.peer] = Clock::now();
            if (goodbye) outgoing_.push_back(Envelope{goodbye, encode_frame({Message{Goodbye{}, {}}})});
        }
        send_heartbeats(Clock::now());
        net_->to_master(outgoing_);
    }
}

}  // namespace ppmpi_bench
