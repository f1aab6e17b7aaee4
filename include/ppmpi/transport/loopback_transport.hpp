// ppmpi/transport/loopback_transport.hpp: an in-process Transport, so the dispatcher and the worker loop
// can be tested as threads of one process without MPI.
//
// A LoopbackHub is the "network": each endpoint() is one process's Transport, with its own
// PeerId. Frames are delivered in order per (sender, receiver) pair. A hub can cut a peer off
// (as if its process died): frames to and from it are silently dropped.
#pragma once

#include <deque>
#include <memory>
#include <mutex>
#include <set>
#include <unordered_map>

#include "ppmpi/transport/transport.hpp"

namespace ppmpi {

class LoopbackHub : public std::enable_shared_from_this<LoopbackHub> {
  public:
    static std::shared_ptr<LoopbackHub> create() {
        return std::shared_ptr<LoopbackHub>(new LoopbackHub());
    }
    // A transport whose own address is `self`.
    std::unique_ptr<Transport> endpoint(PeerId self);
    // Frames to or from `peer` vanish from now on.
    void cut_off(PeerId peer);

    void deliver(PeerId from, PeerId to, Frame frame, bool control = false);
    std::optional<Envelope> receive(PeerId self);

  private:
    LoopbackHub() = default;
    std::mutex mutex_;
    std::unordered_map<PeerId, std::deque<Envelope>> inboxes_;
    std::set<PeerId> cut_off_;
};

class LoopbackTransport : public Transport {
  public:
    LoopbackTransport(std::shared_ptr<LoopbackHub> hub, PeerId self)
        : hub_(std::move(hub)), self_(self) {}
    using Transport::post;
    void post(PeerId peer, Frame frame) override;
    void post_control(PeerId peer, Bytes bytes) override;
    std::optional<Envelope> poll() override;
    std::size_t unfinished_sends(PeerId) const override { return 0; }
    void forget(PeerId peer) override { forgotten_.insert(peer); }

  private:
    std::shared_ptr<LoopbackHub> hub_;
    PeerId self_;
    std::set<PeerId> forgotten_;
};

}  // namespace ppmpi
