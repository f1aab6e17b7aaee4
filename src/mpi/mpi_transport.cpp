#include "ppmpi/mpi/mpi_transport.hpp"

#include <algorithm>
#include <boost/mpi/nonblocking.hpp>
#include <boost/mpi/status.hpp>
#include <climits>
#include <cstring>
#include <set>

#include <poll.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"
#include "ppmpi/mpi/mpi_session.hpp"

namespace ppmpi {
namespace {

using SteadyClock = std::chrono::steady_clock;
// A transfer that has not moved for this long is no reason to keep polling flat out (its peer
// may be dead or stopped: MPI would never say).
constexpr auto kBusyPollFor = std::chrono::milliseconds(250);
// Sends at least this large count as transfers in progress (see transferring()).
constexpr std::size_t kLargeSend = 64 * 1024;
// Polls closer together than this come from a spinning caller.
constexpr auto kSpinningGap = std::chrono::microseconds(10);

// The front of a kTagWithBuffers message: u32 n, u64 chunk size, u64 size of each buffer.
struct BufferTable {
    std::uint64_t chunk_bytes = 0;
    std::vector<std::uint64_t> sizes;
};

Bytes encode_table(const Buffers& buffers, std::size_t chunk_bytes) {
    Bytes table;
    auto put = [&](auto value) {
        table.append(reinterpret_cast<const char*>(&value), sizeof value);
    };
    put(static_cast<std::uint32_t>(buffers.size()));
    put(static_cast<std::uint64_t>(chunk_bytes));
    for (const Buffer& b : buffers) put(static_cast<std::uint64_t>(b.size));
    return table;
}

// Reads the table at the front of a kTagWithBuffers message and removes it.
BufferTable take_table(Bytes& bytes) {
    std::uint32_t count = 0;
    BufferTable table;
    constexpr std::size_t kFixed = sizeof count + sizeof table.chunk_bytes;
    if (bytes.size() < kFixed) throw ProtocolError("frame with buffers: no buffer table");
    std::memcpy(&count, bytes.data(), sizeof count);
    std::memcpy(&table.chunk_bytes, bytes.data() + sizeof count, sizeof table.chunk_bytes);
    std::size_t length = kFixed + std::size_t{count} * sizeof(std::uint64_t);
    if (bytes.size() < length || table.chunk_bytes == 0 || table.chunk_bytes > INT_MAX)
        throw ProtocolError("frame with buffers: malformed buffer table");
    table.sizes.resize(count);
    if (count > 0) std::memcpy(table.sizes.data(), bytes.data() + kFixed, length - kFixed);
    bytes.erase(0, length);
    return table;
}

// Those of `fds` that are readable now.
std::vector<int> readable_now(const std::vector<int>& fds) {
    std::vector<pollfd> polled;
    for (int fd : fds) polled.push_back({fd, POLLIN, 0});
    std::vector<int> out;
    if (::poll(polled.data(), polled.size(), 0) <= 0) return out;
    for (const pollfd& p : polled)
        if (p.revents & POLLIN) out.push_back(p.fd);
    return out;
}

}  // namespace

MpiTransport::~MpiTransport() {
    // Unfinished requests are not waited for (a dead peer would never finish them); their
    // memory must outlive MPI's use of it, so it is deliberately leaked.
    // (Moving a std::list keeps its nodes, so the memory stays where MPI saw it.)
    for (auto* list : {&sends_, &abandoned_})
        if (!list->empty()) new std::list<Send>(std::move(*list));
    for (auto* list : {&incoming_, &abandoned_incoming_})
        if (!list->empty()) new std::list<Incoming>(std::move(*list));
}

void MpiTransport::add_peer(PeerId id, const bmpi::communicator& comm, int rank) {
    auto known = links_.find(id);
    if (known == links_.end() || known->second.forgotten) ++live_peers_;
    links_[id] = Link{comm, rank, false};
    MPI_Comm handle = comm;
    by_address_[{handle, rank}] = id;
    auto same = [&](const bmpi::communicator& c) { return static_cast<MPI_Comm>(c) == handle; };
    if (std::none_of(comms_.begin(), comms_.end(), same)) comms_.push_back(comm);
}

void MpiTransport::drop_comm(MPI_Comm comm) {
    for (auto& [id, link] : links_)
        if (static_cast<MPI_Comm>(link.comm) == comm) forget(id);
    auto same = [&](const bmpi::communicator& c) { return static_cast<MPI_Comm>(c) == comm; };
    comms_.erase(std::remove_if(comms_.begin(), comms_.end(), same), comms_.end());
    next_comm_ = 0;
}

// Starts a send of `data` (nullptr: of send.bytes), kept in sends_ until it completes.
void MpiTransport::isend(const Link& link, int tag, const char* data, std::size_t size,
                         Send send) {
    ++unfinished_[send.peer];
    sends_.push_back(std::move(send));
    Send& kept = sends_.back();
    if (!data) data = kept.bytes.data();
    kept.request = link.comm.isend(link.rank, tag, data, static_cast<int>(size));
    if (size >= kLargeSend) last_transfer_event_ = SteadyClock::now();
}

void MpiTransport::post(PeerId peer, Frame frame) {
    translate_mpi_errors([&] { post_frame(peer, std::move(frame)); });
}

void MpiTransport::post_frame(PeerId peer, Frame frame) {
    auto it = links_.find(peer);
    PPMPI_ENFORCE(it != links_.end(), "post to unknown peer ", peer);
    if (it->second.forgotten) return;
    if (frame.bytes.size() + 4 + 8 * frame.buffers.size() > static_cast<std::size_t>(INT_MAX))
        throw PpmpiError("a message of " + std::to_string(frame.bytes.size()) +
                         " bytes exceeds MPI's 2 GiB limit for one message");
    if (frame.buffers.empty()) {
        std::size_t size = frame.bytes.size();
        isend(it->second, kTag, nullptr, size,
              Send{peer, {}, std::move(frame.bytes), {}});
        return;
    }
    Bytes bytes = encode_table(frame.buffers, chunk_bytes_) + frame.bytes;
    std::size_t size = bytes.size();
    isend(it->second, kTagWithBuffers, nullptr, size,
          Send{peer, {}, std::move(bytes), {}});
    for (Buffer& buffer : frame.buffers) {
        for (std::size_t offset = 0; offset < buffer.size; offset += chunk_bytes_) {
            std::size_t length = std::min(chunk_bytes_, buffer.size - offset);
            isend(it->second, kTagBuffer, buffer.data + offset, length,
                  Send{peer, {}, {}, buffer});
        }
    }
}

void MpiTransport::post_control(PeerId peer, Bytes bytes) {
    auto it = links_.find(peer);
    PPMPI_ENFORCE(it != links_.end(), "post_control to unknown peer ", peer);
    if (it->second.forgotten) return;
    std::size_t size = bytes.size();
    translate_mpi_errors([&] {
        isend(it->second, kTagControl, nullptr, size, Send{peer, {}, std::move(bytes), {}});
    });
}

void MpiTransport::complete_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
        bool done = bool(it->request.test());
        if (done && (it->keep.size >= kLargeSend || it->bytes.size() >= kLargeSend))
            last_transfer_event_ = SteadyClock::now();
        if (done && --unfinished_[it->peer] == 0) unfinished_.erase(it->peer);
        it = done ? sends_.erase(it) : std::next(it);
    }
}

bool MpiTransport::waiting_behind(PeerId peer) const {
    return std::any_of(incoming_.begin(), incoming_.end(),
                       [&](const Incoming& in) { return in.envelope.peer == peer; });
}

// The oldest received frame whose buffers are all in, unless an older one from the same peer
// is still waiting for its buffers.
std::optional<Envelope> MpiTransport::next_complete_incoming() {
    std::set<PeerId> blocked;
    for (auto it = incoming_.begin(); it != incoming_.end(); ++it) {
        if (blocked.count(it->envelope.peer)) continue;
        // All or none: test_all completes (and frees) every request only once all are done, and
        // the frame is then taken out, so no request is tested again.
        auto& requests = it->requests;
        bool done = requests.empty() || bmpi::test_all(requests.begin(), requests.end());
        if (!done) {
            blocked.insert(it->envelope.peer);
            continue;
        }
        if (!it->requests.empty()) last_transfer_event_ = SteadyClock::now();
        Envelope envelope = std::move(it->envelope);
        incoming_.erase(it);
        return envelope;
    }
    return std::nullopt;
}

void MpiTransport::receive_buffers(const Link& link, Incoming& incoming) {
    BufferTable table = take_table(incoming.envelope.frame);
    for (std::uint64_t size : table.sizes) {
        Buffer buffer = Buffer::allocate(size);
        for (std::size_t offset = 0; offset < size; offset += table.chunk_bytes) {
            std::size_t length = std::min<std::size_t>(table.chunk_bytes, size - offset);
            incoming.requests.push_back(link.comm.irecv(link.rank, kTagBuffer, buffer.data + offset,
                                                         static_cast<int>(length)));
        }
        incoming.envelope.buffers.push_back(std::move(buffer));
    }
    last_transfer_event_ = SteadyClock::now();
}

// One matched message from `comm`: a frame ready now, or nothing (a frame now waiting for its
// buffers or behind another; a dropped one). Sets `found` if a message was there at all.
std::optional<Envelope> MpiTransport::receive_from(const bmpi::communicator& comm,
                                                   bool& found) {
    boost::optional<bmpi::status> probed = comm.iprobe(bmpi::any_source, bmpi::any_tag);
    found = bool(probed);
    if (!found) return std::nullopt;
    const int source = probed->source(), tag = probed->tag();
    const int count = probed->count<char>().value_or(0);
    Incoming incoming;
    incoming.envelope.frame.resize(static_cast<std::size_t>(count));
    // The probed message is there, so this returns as soon as it is copied in.
    comm.recv(source, tag, incoming.envelope.frame.data(), count);
    auto peer = by_address_.find({static_cast<MPI_Comm>(comm), source});
    bool known = peer != by_address_.end() && !links_.at(peer->second).forgotten;
    // A chunk matched here belongs to a frame that was dropped: drained, like that frame.
    if (!known || tag == kTagBuffer) return std::nullopt;
    incoming.envelope.peer = peer->second;
    incoming.envelope.control = tag == kTagControl;
    if (incoming.envelope.control) return std::move(incoming.envelope);
    if (tag == kTagWithBuffers) {
        try {
            receive_buffers(links_.at(peer->second), incoming);
        } catch (const ProtocolError& e) {  // read before any receive is posted
            log_warning(std::string("dropping a frame with buffers: ") + e.what());
            return std::nullopt;  // its chunks, if any, are drained as strays
        }
    } else if (!waiting_behind(peer->second)) {
        return std::move(incoming.envelope);
    }
    incoming_.push_back(std::move(incoming));
    return next_complete_incoming();
}

std::optional<Envelope> MpiTransport::poll() {
    std::optional<Envelope> envelope;
    if (stash_) {
        envelope.swap(stash_);
    } else {
        envelope = translate_mpi_errors([&] { return poll_rounds(); });
    }
    delivered_ += envelope.has_value();
    return envelope;
}

// A doze that slept to its deadline, after which a frame was waiting: the frame came without
// making a socket readable.
void MpiTransport::count_miss(SteadyClock::time_point now) {
    if (doze_.until == SteadyClock::time_point{}) return;
    bool came = delivered_ > doze_.delivered;
    doze_.proven |= came && doze_.woke_on_fd;
    doze_.woke_on_fd = false;
    bool missed = now >= doze_.until && came;
    doze_.misses = missed ? doze_.misses + 1 : 0;
    if (doze_.misses < kMissesToGiveUp) return;
    doze_.off = true;
    log_debug("MPI's data does not arrive on sockets here: polling instead of dozing");
}

// The process's sockets (listed again every few seconds, when jobs may have opened some),
// without those found readable yet not MPI's.
std::vector<int> MpiTransport::sockets_to_watch(SteadyClock::time_point now) {
    constexpr auto kRefresh = std::chrono::seconds(2);
    if (now - doze_.refreshed > kRefresh) {
        doze_.sockets = open_sockets();
        doze_.deaf.clear();
        doze_.refreshed = now;
    }
    std::vector<int> out;
    for (int fd : doze_.sockets)
        if (std::find(doze_.deaf.begin(), doze_.deaf.end(), fd) == doze_.deaf.end())
            out.push_back(fd);
    return out;
}

bool MpiTransport::plan_doze(const std::vector<PeerId>& peers, Doze& plan) {
    auto now = SteadyClock::now();
    count_miss(now);
    bool busy = !incoming_.empty() || stash_ ||
                std::any_of(peers.begin(), peers.end(),
                            [&](PeerId p) { return unfinished_sends(p) > 0; });
    if (!socket_dozes_ || doze_.off || busy || !plan.bells.empty()) return false;
    plan.fds = sockets_to_watch(now);
    if (plan.fds.empty()) return false;
    if (!doze_.proven) plan.until = std::min(plan.until, now + kUnprovenDoze);
    plan.woke_on_fd = &doze_.woke_on_fd;
    doze_.until = plan.until;
    doze_.delivered = delivered_;
    auto readable = readable_now(plan.fds);
    plan.arrived = [this, readable = std::move(readable)] {
        stash_ = poll();
        if (stash_) {
            --delivered_;  // counted when poll hands it out
            return true;
        }
        for (int fd : readable_now(readable)) doze_.deaf.push_back(fd);
        return false;
    };
    return true;
}

std::optional<Envelope> MpiTransport::poll_rounds() {
    complete_sends();
    if (auto ready = next_complete_incoming()) return ready;
    // A probe matches before it progresses (over TCP each progress is a poll() system call),
    // so a message that its own progress just read in is only matched by the next probe. A
    // caller that polls again within microseconds (spinning) matches it then: one round
    // (a shorter round trip, docs/performance.md). A caller that polls rarely would wait out a
    // whole backoff sleep for it (measured): it gets a second round.
    auto now = SteadyClock::now();
    int rounds = now - last_poll_ < kSpinningGap ? 1 : 2;
    last_poll_ = now;
    for (int round = 0; round < rounds; ++round) {
        for (std::size_t i = 0; i < comms_.size(); ++i) {
            const bmpi::communicator& comm = comms_[(next_comm_ + i) % comms_.size()];
            bool found = true;
            while (found) {
                auto envelope = receive_from(comm, found);
                if (!envelope) continue;
                next_comm_ = (next_comm_ + i + 1) % comms_.size();
                return envelope;
            }
        }
    }
    return std::nullopt;
}

std::size_t MpiTransport::unfinished_sends(PeerId peer) const {
    auto it = unfinished_.find(peer);
    return it == unfinished_.end() ? 0 : it->second;
}

bool MpiTransport::transferring(SteadyClock::time_point now) const {
    bool large_send = std::any_of(sends_.begin(), sends_.end(), [](const Send& s) {
        return s.keep.size >= kLargeSend || s.bytes.size() >= kLargeSend;
    });
    return (large_send || !incoming_.empty()) && now - last_transfer_event_ < kBusyPollFor;
}

void MpiTransport::forget(PeerId peer) {
    auto it = links_.find(peer);
    if (it == links_.end()) return;
    if (!it->second.forgotten) --live_peers_;
    it->second.forgotten = true;
    unfinished_.erase(peer);
    for (auto send = sends_.begin(); send != sends_.end();) {
        if (send->peer == peer) {
            abandoned_.splice(abandoned_.end(), sends_, send++);
        } else {
            ++send;
        }
    }
    for (auto in = incoming_.begin(); in != incoming_.end();) {
        if (in->envelope.peer == peer) {
            abandoned_incoming_.splice(abandoned_incoming_.end(), incoming_, in++);
        } else {
            ++in;
        }
    }
}

}  // namespace ppmpi
