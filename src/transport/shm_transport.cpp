#include "ppmpi/transport/shm_transport.hpp"

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"
#include "ppmpi/core/process.hpp"

#include <algorithm>
#include <chrono>
#include <random>
#include <sstream>
#include <unistd.h>

namespace ppmpi {
namespace {

constexpr const char* kOffer = "ppmpi-shm";
constexpr const char* kVersion = "1";
constexpr const char* kAttached = "ppmpi-shm attached";
constexpr const char* kDeclined = "ppmpi-shm declined";
constexpr std::size_t kMaxRingBytes = std::size_t{1} << 30;
// How long a stream that stopped moving keeps the caller polling without sleep (a peer that
// hangs mid-stream must not cost a core for good; the heartbeat finds it).
constexpr auto kBusyPollFor = std::chrono::milliseconds(250);
// Parts of a streamed frame read by one poll (16 × a quarter of a 1 MiB ring: 4 MiB, ~0.5 ms).
constexpr int kPartsPerPoll = 16;

}  // namespace

ShmTransport::ShmTransport(std::unique_ptr<Transport> inner,
                           bool accept_offers,
                           std::size_t ring_bytes)
    : inner_(std::move(inner)), accept_offers_(accept_offers), ring_bytes_(ring_bytes / 64 * 64),
      host_(this_host_name()) {}

bool ShmTransport::offer(PeerId master, std::string& why) {
    if (host_.empty()) {
        why = "this host has no name to offer";
        return false;
    }
    std::uint64_t nonce = fresh_nonce();
    auto segment = ShmSegment::create(ring_bytes_, nonce, why);
    if (!segment) return false;
    Link& link = links_[master];
    link.segment = std::move(segment);
    link.out = &link.segment->to_master();
    link.in = &link.segment->to_worker();
    ring_peers_.push_back(master);
    std::ostringstream text;
    text << kOffer << ' ' << kVersion << ' ' << host_ << ' ' << nonce << ' ' << ring_bytes_ << ' '
         << link.segment->path_for_peer();
    inner_->post_control(master, text.str());
    return true;
}

bool ShmTransport::sends_through_ring(PeerId peer) const {
    auto it = links_.find(peer);
    return it != links_.end() && it->second.switched;
}

void ShmTransport::switch_sending(Link& link) {
    RingControl& control = link.out->control();
    control.mpi_before = link.mpi_sent;
    control.switched.store(1, std::memory_order_release);
    link.switched = true;
}

bool ShmTransport::try_write(Link& link, Pending& record) {
    return record.streamed ? try_stream(link, record) : link.out->try_write(record.frame);
}

// Step 4 for a large frame: as much of its stream as the ring has room for; true once whole.
bool ShmTransport::try_stream(Link& link, Pending& record) {
    if (!record.begun) {
        record.begun = link.out->try_write_begin(record.frame);
        if (!record.begun) return false;
    }
    std::size_t size = ShmRing::stream_size(record.frame);
    while (record.written < size) {
        std::size_t wrote =
            link.out->try_write_part(record.frame, record.written, link.out->capacity() / 4);
        if (wrote == 0) return false;
        record.written += wrote;
        last_stream_move_ = std::chrono::steady_clock::now();
    }
    return true;
}

void ShmTransport::write_or_queue(Link& link, Pending record) {
    if (link.backlog.empty() && try_write(link, record)) return;
    link.backlog.push_back(std::move(record));
}

void ShmTransport::post(PeerId peer, Frame frame) {
    Link& link = links_[peer];
    if (!link.switched) {
        inner_->post(peer, std::move(frame));
        ++link.mpi_sent;
        return;
    }
    bool streamed = ShmRing::record_size(frame) > link.out->capacity() / 4;
    write_or_queue(link, Pending{std::move(frame), streamed});
}

void ShmTransport::post_control(PeerId peer, Bytes bytes) {
    inner_->post_control(peer, std::move(bytes));
}

void ShmTransport::flush_backlogs() {
    for (PeerId peer : ring_peers_) {
        Link& link = links_.at(peer);
        while (!link.backlog.empty() && try_write(link, link.backlog.front()))
            link.backlog.pop_front();
    }
}

std::optional<Envelope> ShmTransport::read_ring(PeerId peer, Link& link) {
    RingControl& control = link.in->control();
    if (!control.switched.load(std::memory_order_acquire)) return std::nullopt;
    if (link.mpi_received < control.mpi_before) return std::nullopt; // step 5: MPI first
    auto kind = link.in->peek();
    if (!kind) return std::nullopt;
    if (*kind != RecordKind::Frame) return read_streamed(peer, link);
    if (link.incoming) throw ProtocolError("shared-memory ring: a frame inside a stream");
    Frame frame = link.in->read_frame();
    return Envelope{peer, std::move(frame.bytes), std::move(frame.buffers)};
}

// Step 5 for a streamed frame: the parts the ring holds now, up to kPartsPerPoll (the writer
// keeps writing meanwhile: a large frame must not keep the other peers waiting for all of
// it); the frame once it is whole.
std::optional<Envelope> ShmTransport::read_streamed(PeerId peer, Link& link) {
    int parts = 0;
    for (auto kind = link.in->peek(); kind && parts < kPartsPerPoll; kind = link.in->peek()) {
        if (*kind == RecordKind::Begin) {
            if (link.incoming) throw ProtocolError("shared-memory ring: a stream inside a stream");
            link.incoming = Incoming{link.in->read_begin(), 0};
        } else if (*kind == RecordKind::Part && link.incoming) {
            Incoming& in = *link.incoming;
            in.received += link.in->read_part(in.frame, in.received);
            last_stream_move_ = std::chrono::steady_clock::now();
            ++parts;
        } else {
            throw ProtocolError("shared-memory ring: a frame or part outside its stream");
        }
        if (link.incoming &&
            link.incoming->received == ShmRing::stream_size(link.incoming->frame)) {
            Frame frame = std::move(link.incoming->frame);
            link.incoming.reset();
            return Envelope{peer, std::move(frame.bytes), std::move(frame.buffers)};
        }
    }
    return std::nullopt;
}

std::optional<Envelope> ShmTransport::read_rings() {
    for (std::size_t i = 0; i < ring_peers_.size(); ++i) {
        std::size_t at = (next_ring_ + i) % ring_peers_.size();
        PeerId peer = ring_peers_[at];
        if (auto envelope = read_ring(peer, links_.at(peer))) {
            next_ring_ = (at + 1) % ring_peers_.size();
            return envelope;
        }
    }
    return std::nullopt;
}

std::optional<Envelope> ShmTransport::poll() {
    flush_backlogs();
    if (streak_ < kRingStreak) {
        if (auto envelope = read_rings()) {
            ++streak_;
            return envelope;
        }
    }
    streak_ = 0;
    if (!inner_due()) return std::nullopt;
    while (auto envelope = inner_->poll()) {
        if (auto out = accept(std::move(*envelope))) return out;
    }
    return read_rings(); // the last of a peer's mpi_before frames may have released its ring
}

// Step 8: the inner transport is polled every time, unless it is quiet.
bool ShmTransport::inner_due() {
    auto now = std::chrono::steady_clock::now();
    if (now - last_inner_poll_ < kQuietInnerGap && ring_only()) return false;
    last_inner_poll_ = now;
    return true;
}

bool ShmTransport::ring_only() const {
    if (ring_peers_.empty() || inner_->live_peers() != ring_peers_.size()) return false;
    return std::all_of(ring_peers_.begin(), ring_peers_.end(), [this](PeerId peer) {
        const Link& link = links_.at(peer);
        const RingControl& in = link.in->control();
        return link.switched && in.switched.load(std::memory_order_acquire) &&
               link.mpi_received >= in.mpi_before && inner_->unfinished_sends(peer) == 0;
    });
}

// Step 5 for a frame that came over MPI (counted); control messages are this transport's own.
std::optional<Envelope> ShmTransport::accept(Envelope envelope) {
    if (envelope.control) {
        on_control(envelope);
        return std::nullopt;
    }
    ++links_[envelope.peer].mpi_received;
    return envelope;
}

void ShmTransport::on_control(const Envelope& envelope) {
    std::vector<std::string> words = control_words(envelope.frame);
    auto it = links_.find(envelope.peer);
    bool offered_here = it != links_.end() && it->second.segment && !it->second.switched;
    if (words.size() == 6 && words[0] == kOffer) {
        on_offer(envelope.peer, words);
    } else if (offered_here && envelope.frame == kAttached) { // step 3
        it->second.segment->close_descriptor();
        switch_sending(it->second);
    } else if (offered_here && envelope.frame.rfind(kDeclined, 0) == 0) {
        log_debug("shared memory declined by peer " + std::to_string(envelope.peer) + ":" +
                  envelope.frame.substr(std::string(kDeclined).size()));
        drop_ring(envelope.peer); // MPI goes on
    } else {
        log_warning("ignoring an unknown transport control message: " + envelope.frame);
    }
}

// Step 2 (master side).
void ShmTransport::on_offer(PeerId peer, const std::vector<std::string>& words) {
    std::string why;
    std::unique_ptr<ShmSegment> segment;
    std::uint64_t nonce = std::strtoull(words[3].c_str(), nullptr, 10);
    std::size_t ring_bytes = std::strtoull(words[4].c_str(), nullptr, 10);
    if (!accept_offers_)
        why = "turned off (PPMPI_SHM=0)";
    else if (words[1] != kVersion)
        why = "version " + words[1] + " (this side speaks " + kVersion + ")";
    else if (words[2] != host_)
        why = "another host (" + words[2] + ")";
    else if (ring_bytes == 0 || ring_bytes % 64 != 0 || ring_bytes > kMaxRingBytes)
        why = "ring of " + words[4] + " bytes";
    else
        segment = ShmSegment::attach(words[5], ring_bytes, nonce, why);
    if (!segment) {
        log_debug("peer " + std::to_string(peer) + ": no shared memory (" + why + ")");
        inner_->post_control(peer, std::string(kDeclined) + " " + why);
        return;
    }
    log_debug("peer " + std::to_string(peer) + ": frames through shared memory (" +
              std::to_string(ring_bytes >> 10) + " KiB each way)");
    Link& link = links_[peer];
    link.segment = std::move(segment);
    link.out = &link.segment->to_worker();
    link.in = &link.segment->to_master();
    ring_peers_.push_back(peer);
    switch_sending(link);
    inner_->post_control(peer, kAttached);
}

std::size_t ShmTransport::unfinished_sends(PeerId peer) const {
    auto it = links_.find(peer);
    std::size_t queued = it == links_.end() ? 0 : it->second.backlog.size();
    return inner_->unfinished_sends(peer) + queued;
}

bool ShmTransport::transferring(std::chrono::steady_clock::time_point now) const {
    if (inner_->transferring(now)) return true;
    if (now - last_stream_move_ >= kBusyPollFor) return false;
    return std::any_of(ring_peers_.begin(), ring_peers_.end(), [&](PeerId peer) {
        const Link& link = links_.at(peer);
        return link.incoming || (!link.backlog.empty() && link.backlog.front().streamed);
    });
}

// Step 7.
bool ShmTransport::plan_doze(const std::vector<PeerId>& peers, Doze& plan) {
    auto has_ring = [&](PeerId peer) {
        auto it = links_.find(peer);
        return it != links_.end() && it->second.segment;
    };
    if (std::none_of(peers.begin(), peers.end(), has_ring)) return inner_->plan_doze(peers, plan);
    if (!doze_supported() || peers.size() + plan.bells.size() > Doze::kMaxBells) return false;
    std::vector<const ShmRing*> rings;
    for (PeerId peer : peers) {
        auto it = links_.find(peer);
        if (it == links_.end() || !it->second.switched) return false;
        Link& link = it->second;
        RingControl& in = link.in->control();
        if (!in.switched.load(std::memory_order_acquire) || link.mpi_received < in.mpi_before ||
            !link.backlog.empty() || link.incoming || inner_->unfinished_sends(peer) > 0)
            return false;
        plan.bells.push_back(&in.bell);
        plan.keep.push_back(link.segment);
        rings.push_back(link.in);
    }
    auto earlier = std::move(plan.arrived);
    plan.arrived = [rings = std::move(rings), earlier = std::move(earlier)] {
        auto unread = [](const ShmRing* ring) { return ring->unread(); };
        return (earlier && earlier()) || std::any_of(rings.begin(), rings.end(), unread);
    };
    return true;
}

void ShmTransport::drop_ring(PeerId peer) {
    auto it = links_.find(peer);
    if (it == links_.end()) return;
    Link& link = it->second;
    link.out = link.in = nullptr;
    link.segment.reset();
    link.switched = false;
    link.backlog.clear();
    link.incoming.reset();
    ring_peers_.erase(std::remove(ring_peers_.begin(), ring_peers_.end(), peer), ring_peers_.end());
    next_ring_ = 0;
}

void ShmTransport::forget(PeerId peer) {
    drop_ring(peer);
    links_.erase(peer);
    inner_->forget(peer);
}

}  // namespace ppmpi
