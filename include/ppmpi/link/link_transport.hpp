// ppmpi/link/link_transport.hpp: the client's side of remote servers, as a Transport: the
// dispatcher's own transport (MPI, shared memory) for its workers, and authenticated links
// (link_stream.hpp) whose server's workers are slots, each a peer of its own.
//
// A link peer is kFirstPeer + (link << kSlotBits) + slot. The caller proved the secret on the
// socket (handshake.hpp) before attach(); from then on every byte moves here, on the thread
// that owns this transport, never blocking: a server that stops reading or answering costs a
// queue and, after kSilenceLimit, the link (its slots are reported by take_ended()).
#pragma once

#include <map>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "ppmpi/link/link_stream.hpp"
#include "ppmpi/transport/transport.hpp"

namespace ppmpi::link {

class LinkTransport : public Transport {
  public:
    static constexpr PeerId kFirstPeer = PeerId{1} << 48;
    static constexpr int kSlotBits = 20;

    explicit LinkTransport(Transport& base) : base_(base) {}

    static bool is_link_peer(PeerId peer) { return peer >= kFirstPeer; }
    static int link_of(PeerId peer) { return static_cast<int>((peer - kFirstPeer) >> kSlotBits); }
    static std::uint32_t slot_of(PeerId peer) {
        return static_cast<std::uint32_t>((peer - kFirstPeer) & ((PeerId{1} << kSlotBits) - 1));
    }
    static PeerId peer_of(int link, std::uint32_t slot) {
        return kFirstPeer + (PeerId{link} << kSlotBits) + slot;
    }

    // Takes an authenticated connection (the socket and its session keys) to the server
    // `name` ("host:port"); returns its id.
    int attach(int fd, const SessionKeys& keys, std::string name);
    // Says Bye, writes what is queued if the socket takes it now, and closes the link.
    void close(int link);
    // Ends the link now (its server was judged hung): its slots are reported by take_ended().
    void fail(int link, const std::string& reason);

    struct State {
        bool ready = false;  // its Info arrived (step 1)
        bool ended = false;
        std::string name;
        std::string reason;  // why it ended
        LinkInfo info;
    };
    // nullptr for a link never attached or closed.
    const State* state(int link) const;
    // The slots of links that ended since the last call, with why.
    std::vector<std::pair<PeerId, std::string>> take_ended();

    using Transport::post;
    void post(PeerId peer, Frame frame) override;
    void post_control(PeerId peer, Bytes bytes) override;
    std::optional<Envelope> poll() override;
    std::size_t unfinished_sends(PeerId peer) const override;
    void forget(PeerId peer) override;
    bool transferring(Clock::time_point now) const override;
    bool plan_doze(const std::vector<PeerId>& peers, Doze& plan) override;
    std::size_t live_peers() const override { return base_.live_peers(); }
    // Adds the links' sockets; false if something waits to be sent on one (no doze then).
    bool socket_fds(std::vector<int>& fds) const;

  private:
    struct Link {
        std::unique_ptr<LinkStream> stream;
        State state;
        std::set<std::uint32_t> slots;  // heard from
        std::set<std::uint32_t> forgotten;
    };
    std::optional<Envelope> poll_links();
    std::optional<Envelope> poll_link(int id, Link& link, Clock::time_point now);
    void end(int id, Link& link, const std::string& reason);

    Transport& base_;
    std::map<int, Link> links_;
    int next_link_ = 0;
    unsigned turn_ = 0;
    std::vector<std::pair<PeerId, std::string>> ended_;
};

}  // namespace ppmpi::link
