// ppmpi/transport.hpp: how frames move between this process and its peers.
//
// The contract that keeps a dead or hung peer from freezing the caller:
//  - post() never blocks: it starts a send and keeps the buffer until the send completes.
//  - poll() never blocks: it completes finished sends and returns at most one received frame.
//  - forget() stops all dealings with a peer: its unfinished sends are abandoned (never
//    waited for), and frames from it are dropped.
// Only the thread that created the transport may call it (for MPI: the thread that owns MPI).
#pragma once

#include <cstddef>
#include <optional>

#include "ppmpi/protocol.hpp"

namespace ppmpi {

using PeerId = std::int64_t;

struct Envelope {
    PeerId peer = -1;
    Bytes frame;
};

class Transport {
  public:
    virtual ~Transport() = default;
    virtual void post(PeerId peer, Bytes frame) = 0;
    virtual std::optional<Envelope> poll() = 0;
    virtual std::size_t unfinished_sends(PeerId peer) const = 0;
    virtual void forget(PeerId peer) = 0;
};

}  // namespace ppmpi
