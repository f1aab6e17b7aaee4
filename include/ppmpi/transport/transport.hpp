// ppmpi/transport/transport.hpp: how frames move between this process and its peers.
//
// The contract that keeps a dead or hung peer from freezing the caller:
//  - post() never blocks: it starts a send and keeps the frame (bytes and buffers) until the
//    send completes.
//  - poll() never blocks: it completes finished sends and returns at most one received frame,
//    once its buffers have arrived too; frames from one peer come out in the order sent.
//  - forget() stops all dealings with a peer: its unfinished sends are abandoned (never
//    waited for), and frames from it are dropped.
//  - post_control() sends a transport-level message (the handshake of a transport layered on
//    this one, shm_transport.hpp): it comes out of poll() with `control` set, never counted or
//    ordered among the frames, and is never seen by the protocol.
//  - plan_doze() lets a caller sleep until a peer sends (doorbell.hpp) where peers can ring.
//  - live_peers() says how many peers it serves, where it knows.
// Only the thread that created the transport may call it (for MPI: the thread that owns MPI).
#pragma once

#include <chrono>
#include <cstddef>
#include <optional>
#include <vector>

#include "ppmpi/core/doorbell.hpp"
#include "ppmpi/core/ids.hpp"
#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

struct Envelope {
    PeerId peer = -1;
    Bytes frame;
    Buffers buffers = {};
    bool control = false;
};

class Transport {
  public:
    virtual ~Transport() = default;
    virtual void post(PeerId peer, Frame frame) = 0;
    void post(PeerId peer, Bytes bytes) { post(peer, Frame{std::move(bytes), {}}); }
    virtual void post_control(PeerId peer, Bytes bytes) = 0;
    virtual std::optional<Envelope> poll() = 0;
    virtual std::size_t unfinished_sends(PeerId peer) const = 0;
    virtual void forget(PeerId peer) = 0;
    // True while large data is on its way and moved recently: MPI moves it only inside MPI
    // calls (no progress thread), so the caller should poll without sleeping meanwhile.
    virtual bool transferring(std::chrono::steady_clock::time_point) const { return false; }
    // For a caller about to sleep until `peers` send something (doorbell.hpp): adds the bells
    // they ring to `plan`. False if any of them cannot ring one (it sends over MPI) or this
    // side has something still to move: the caller must then poll on its own schedule.
    virtual bool plan_doze(const std::vector<PeerId>& /*peers*/, Doze& /*plan*/) { return false; }
    // How many peers this transport serves (added and not forgotten), for a transport layered
    // on it that polls it less often once every peer has moved to its own path
    // (shm_transport.hpp, step 8). The default: unknown, so never polled less often.
    static constexpr std::size_t kUnknownPeers = static_cast<std::size_t>(-1);
    virtual std::size_t live_peers() const { return kUnknownPeers; }
};

}  // namespace ppmpi
