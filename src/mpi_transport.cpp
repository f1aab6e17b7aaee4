#include "ppmpi/mpi_transport.hpp"

#include <algorithm>
#include <climits>
#include <cstring>
#include <set>

#include "ppmpi/errors.hpp"
#include "ppmpi/log.hpp"
#include "ppmpi/mpi_env.hpp"

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

void MpiTransport::add_peer(PeerId id, MPI_Comm comm, int rank) {
    auto known = links_.find(id);
    if (known == links_.end() || known->second.forgotten) ++live_peers_;
    links_[id] = Link{comm, rank, false};
    by_address_[{comm, rank}] = id;
    if (std::find(comms_.begin(), comms_.end(), comm) == comms_.end()) comms_.push_back(comm);
}

void MpiTransport::drop_comm(MPI_Comm comm) {
    for (auto& [id, link] : links_)
        if (link.comm == comm) forget(id);
    comms_.erase(std::remove(comms_.begin(), comms_.end(), comm), comms_.end());
    next_comm_ = 0;
}

// Starts a send of `data` (nullptr: of send.bytes), kept in sends_ until it completes.
void MpiTransport::isend(const Link& link, int tag, const char* data, std::size_t size,
                         Send send) {
    sends_.push_back(std::move(send));
    Send& kept = sends_.back();
    if (!data) data = kept.bytes.data();
    check_mpi(MPI_Isend(data, static_cast<int>(size), MPI_BYTE, link.rank, tag, link.comm,
                        &kept.request),
              "MPI_Isend");
    if (size >= kLargeSend) last_transfer_event_ = SteadyClock::now();
}

void MpiTransport::post(PeerId peer, Frame frame) {
    auto it = links_.find(peer);
    PPMPI_ENFORCE(it != links_.end(), "post to unknown peer ", peer);
    if (it->second.forgotten) return;
    if (frame.bytes.size() + 4 + 8 * frame.buffers.size() > static_cast<std::size_t>(INT_MAX))
        throw PpmpiError("a message of " + std::to_string(frame.bytes.size()) +
                         " bytes exceeds MPI's 2 GiB limit for one message");
    if (frame.buffers.empty()) {
        std::size_t size = frame.bytes.size();
        isend(it->second, kTag, nullptr, size,
              Send{peer, MPI_REQUEST_NULL, std::move(frame.bytes), {}});
        return;
    }
    Bytes bytes = encode_table(frame.buffers, chunk_bytes_) + frame.bytes;
    std::size_t size = bytes.size();
    isend(it->second, kTagWithBuffers, nullptr, size,
          Send{peer, MPI_REQUEST_NULL, std::move(bytes), {}});
    for (Buffer& buffer : frame.buffers) {
        for (std::size_t offset = 0; offset < buffer.size; offset += chunk_bytes_) {
            std::size_t length = std::min(chunk_bytes_, buffer.size - offset);
            isend(it->second, kTagBuffer, buffer.data + offset, length,
                  Send{peer, MPI_REQUEST_NULL, {}, buffer});
        }
    }
}

void MpiTransport::post_control(PeerId peer, Bytes bytes) {
    auto it = links_.find(peer);
    PPMPI_ENFORCE(it != links_.end(), "post_control to unknown peer ", peer);
    if (it->second.forgotten) return;
    std::size_t size = bytes.size();
    isend(it->second, kTagControl, nullptr, size,
          Send{peer, MPI_REQUEST_NULL, std::move(bytes), {}});
}

void MpiTransport::complete_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
        int done = 0;
        check_mpi(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (done && (it->keep.size >= kLargeSend || it->bytes.size() >= kLargeSend))
            last_transfer_event_ = SteadyClock::now();
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
        int done = 1;
        if (!it->requests.empty())
            check_mpi(MPI_Testall(static_cast<int>(it->requests.size()), it->requests.data(), &done,
                                  MPI_STATUSES_IGNORE),
                      "MPI_Testall");
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
            incoming.requests.push_back(MPI_REQUEST_NULL);
            check_mpi(MPI_Irecv(buffer.data + offset, static_cast<int>(length), MPI_BYTE, link.rank,
                                kTagBuffer, link.comm, &incoming.requests.back()),
                      "MPI_Irecv");
        }
        incoming.envelope.buffers.push_back(std::move(buffer));
    }
    last_transfer_event_ = SteadyClock::now();
}

// One matched message from `comm`: a frame ready now, or nothing (a frame now waiting for its
// buffers or behind another; a dropped one). Sets `found` if a message was there at all.
std::optional<Envelope> MpiTransport::receive_from(MPI_Comm comm, bool& found) {
    int matched = 0;
    MPI_Message message;
    MPI_Status status;
    check_mpi(MPI_Improbe(MPI_ANY_SOURCE, MPI_ANY_TAG, comm, &matched, &message, &status),
              "MPI_Improbe");
    found = matched != 0;
    if (!found) return std::nullopt;
    int count = 0;
    check_mpi(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
    Incoming incoming;
    incoming.envelope.frame.resize(static_cast<std::size_t>(count));
    check_mpi(MPI_Mrecv(incoming.envelope.frame.data(), count, MPI_BYTE, &message,
                        MPI_STATUS_IGNORE),
              "MPI_Mrecv");
    auto peer = by_address_.find({comm, status.MPI_SOURCE});
    bool known = peer != by_address_.end() && !links_.at(peer->second).forgotten;
    // A chunk matched here belongs to a frame that was dropped: drained, like that frame.
    if (!known || status.MPI_TAG == kTagBuffer) return std::nullopt;
    incoming.envelope.peer = peer->second;
    incoming.envelope.control = status.MPI_TAG == kTagControl;
    if (incoming.envelope.control) return std::move(incoming.envelope);
    if (status.MPI_TAG == kTagWithBuffers) {
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
    complete_sends();
    if (auto ready = next_complete_incoming()) return ready;
    // MPI_Improbe matches before it progresses (over TCP each progress is a poll() system
    // call), so a message that its own progress just read in is only matched by the next
    // probe. A caller that polls again within microseconds (spinning) matches it then: one
    // round (round trip 31.4 → 28.8 µs). A caller that polls rarely would wait out a whole
    // backoff sleep for it (measured): it gets a second round.
    auto now = SteadyClock::now();
    int rounds = now - last_poll_ < kSpinningGap ? 1 : 2;
    last_poll_ = now;
    for (int round = 0; round < rounds; ++round) {
        for (std::size_t i = 0; i < comms_.size(); ++i) {
            MPI_Comm comm = comms_[(next_comm_ + i) % comms_.size()];
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
    return static_cast<std::size_t>(std::count_if(
        sends_.begin(), sends_.end(), [&](const Send& s) { return s.peer == peer; }));
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
