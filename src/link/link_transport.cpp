#include "ppmpi/link/link_transport.hpp"

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"

namespace ppmpi::link {

int LinkTransport::attach(int fd, const SessionKeys& keys, std::string name) {
    int id = next_link_++;
    PPMPI_ENFORCE(id < (1 << 20), "at most 2^20 links per process");
    links_[id].stream = std::make_unique<LinkStream>(fd, keys);
    links_[id].state.name = std::move(name);
    return id;
}

void LinkTransport::close(int id) {
    auto it = links_.find(id);
    if (it == links_.end()) return;
    Link& link = it->second;
    if (!link.state.ended) {
        try {  // best effort: a server that does not take it now notices the closed socket
            link.stream->send_bye();
            link.stream->flush();
        } catch (const LinkError&) {
        }
        end(id, link, "closed");
    }
    links_.erase(it);
}

void LinkTransport::fail(int id, const std::string& reason) {
    auto it = links_.find(id);
    if (it != links_.end()) end(id, it->second, reason);
}

const LinkTransport::State* LinkTransport::state(int id) const {
    auto it = links_.find(id);
    return it == links_.end() ? nullptr : &it->second.state;
}

std::vector<std::pair<PeerId, std::string>> LinkTransport::take_ended() {
    return std::exchange(ended_, {});
}

void LinkTransport::end(int id, Link& link, const std::string& reason) {
    if (link.state.ended) return;
    link.state.ended = true;
    link.state.reason = reason;
    for (std::uint32_t slot : link.slots) ended_.emplace_back(peer_of(id, slot), reason);
    link.stream.reset();  // closes the socket
}

void LinkTransport::post(PeerId peer, Frame frame) {
    if (!is_link_peer(peer)) return base_.post(peer, std::move(frame));
    auto it = links_.find(link_of(peer));
    if (it == links_.end() || it->second.state.ended) return;
    Link& link = it->second;
    if (link.forgotten.count(slot_of(peer))) return;
    try {
        link.stream->send_slot(slot_of(peer), frame.bytes, frame.buffers, false);
        link.stream->flush();
    } catch (const LinkError& e) {
        end(it->first, link, std::string("LinkError: ") + e.what());
    }
}

void LinkTransport::post_control(PeerId peer, Bytes bytes) {
    if (!is_link_peer(peer)) base_.post_control(peer, std::move(bytes));
}

// The links are read once the base transport has nothing, and at least every kLinkTurn-th
// call while it has (a read is a system call; the base transport's shared memory is not).
std::optional<Envelope> LinkTransport::poll() {
    constexpr unsigned kLinkTurn = 8;
    if (!links_.empty() && ++turn_ % kLinkTurn == 0)
        if (auto envelope = poll_links()) return envelope;
    if (auto envelope = base_.poll()) return envelope;
    return links_.empty() ? std::nullopt : poll_links();
}

std::optional<Envelope> LinkTransport::poll_links() {
    auto now = Clock::now();
    for (auto& [id, link] : links_) {
        if (link.state.ended) continue;
        try {
            if (auto envelope = poll_link(id, link, now)) return envelope;
        } catch (const LinkError& e) {
            end(id, link, std::string(dynamic_cast<const AuthError*>(&e) ? "AuthError: "
                                                                          : "LinkError: ") +
                              e.what());
        }
    }
    return std::nullopt;
}

// Step 5 (pings and silence), then the next Slot message of this link.
std::optional<Envelope> LinkTransport::poll_link(int id, Link& link, Clock::time_point now) {
    LinkStream& stream = *link.stream;
    if (now - stream.last_sent() >= kBeatInterval) stream.send_ping();
    stream.flush();
    while (auto message = stream.receive()) {
        switch (message->kind) {
            case LinkKind::Info:
                link.state.info = message->info;
                link.state.ready = true;
                break;
            case LinkKind::Slot: {
                link.slots.insert(message->slot);
                if (link.forgotten.count(message->slot)) break;
                return Envelope{peer_of(id, message->slot), std::move(message->frame),
                                std::move(message->buffers)};
            }
            case LinkKind::Bye: throw LinkError("the server said goodbye");
            case LinkKind::Ping: break;
        }
    }
    if (now - stream.last_received() > kSilenceLimit)
        throw LinkError("timed out: the server was silent for longer than " +
                        std::to_string(kSilenceLimit.count()) + " s");
    return std::nullopt;
}

std::size_t LinkTransport::unfinished_sends(PeerId peer) const {
    if (!is_link_peer(peer)) return base_.unfinished_sends(peer);
    auto it = links_.find(link_of(peer));
    return it != links_.end() && it->second.stream && it->second.stream->unsent() ? 1 : 0;
}

void LinkTransport::forget(PeerId peer) {
    if (!is_link_peer(peer)) return base_.forget(peer);
    auto it = links_.find(link_of(peer));
    if (it != links_.end()) it->second.forgotten.insert(slot_of(peer));
}

bool LinkTransport::transferring(Clock::time_point now) const {
    for (const auto& [id, link] : links_)
        if (link.stream && link.stream->busy()) return true;
    return base_.transferring(now);
}

// The base transport's plan for its peers, and the links' sockets.
bool LinkTransport::plan_doze(const std::vector<PeerId>& peers, Doze& plan) {
    std::vector<PeerId> own;
    for (PeerId peer : peers)
        if (!is_link_peer(peer)) own.push_back(peer);
    if ((!own.empty() || links_.empty()) && !base_.plan_doze(own, plan)) return false;
    return socket_fds(plan.fds);
}

bool LinkTransport::socket_fds(std::vector<int>& fds) const {
    for (const auto& [id, link] : links_)
        if (link.stream && !link.stream->add_fd(fds)) return false;
    return true;
}

}  // namespace ppmpi::link
