#include "ppmpi/transport/loopback_transport.hpp"

namespace ppmpi {

std::unique_ptr<Transport> LoopbackHub::endpoint(PeerId self) {
    std::lock_guard<std::mutex> lock(mutex_);
    inboxes_[self];
    return std::make_unique<LoopbackTransport>(shared_from_this(), self);
}

void LoopbackHub::cut_off(PeerId peer) {
    std::lock_guard<std::mutex> lock(mutex_);
    cut_off_.insert(peer);
    inboxes_[peer].clear();
}

void LoopbackHub::deliver(PeerId from, PeerId to, Frame frame, bool control) {
    std::lock_guard<std::mutex> lock(mutex_);
    if (cut_off_.count(from) || cut_off_.count(to)) return;
    inboxes_[to].push_back(
        Envelope{from, std::move(frame.bytes), std::move(frame.buffers), control});
}

std::optional<Envelope> LoopbackHub::receive(PeerId self) {
    std::lock_guard<std::mutex> lock(mutex_);
    auto& inbox = inboxes_[self];
    if (inbox.empty() || cut_off_.count(self)) return std::nullopt;
    Envelope envelope = std::move(inbox.front());
    inbox.pop_front();
    return envelope;
}

void LoopbackTransport::post(PeerId peer, Frame frame) {
    if (forgotten_.count(peer)) return;
    hub_->deliver(self_, peer, std::move(frame));
}

void LoopbackTransport::post_control(PeerId peer, Bytes bytes) {
    if (forgotten_.count(peer)) return;
    hub_->deliver(self_, peer, Frame{std::move(bytes), {}}, true);
}

std::optional<Envelope> LoopbackTransport::poll() {
    while (auto envelope = hub_->receive(self_)) {
        if (!forgotten_.count(envelope->peer)) return envelope;
    }
    return std::nullopt;
}

}  // namespace ppmpi
