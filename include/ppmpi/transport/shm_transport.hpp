// ppmpi/transport/shm_transport.hpp: frames through shared memory between the master and the workers it
// spawned on its own host; all else over the inner transport (MPI).
//
// Why: a spawned worker is an MPI job of its own, and Open MPI 4.1's shared-memory BTL (vader)
// only joins ranks of one job, so a master and its spawned workers talk over loopback TCP:
// ~7.5 µs one way for 8 bytes (bench: the spawned ping-pong), twice per job. A ring in shared
// memory (shm_ring.hpp) takes a copy in and a copy out. Ranks of one mpirun world already use
// vader and get no ring.
//
// The protocol (W = the worker's side, M = the master's side):
//  1. W, spawned (PPMPI_SHM=0 turns rings off), creates an unnamed segment (a memfd) with two
//     rings and sends M, as a control message before anything else, the offer
//     "ppmpi-shm 1 <host> <nonce> <ring bytes> /proc/<W's pid>/fd/<fd>".
//  2. M, on the offer: if <host> is its own host name and the segment maps from that path with
//     that nonce and size, it switches its sending to the ring (step 4) and answers
//     "ppmpi-shm attached"; otherwise it answers "ppmpi-shm declined <why>": the pair stays on
//     MPI.
//  3. W, on the answer: closes the descriptor either way; then switches its sending if
//     attached, or unmaps the segment if declined.
//  4. Switching one direction: the sender writes into its ring how many frames it has sent over
//     MPI (`mpi_before`), then `switched`. From then on every frame goes into the ring: one
//     whose record fits in a quarter of the ring as a Frame record; a larger one streamed, as
//     a Begin record and Part records of up to a quarter of the ring, written as the reader
//     frees room (shm_ring.hpp). A full ring never blocks post(): what is left waits in order
//     in a backlog that later polls write out.
//  5. Receiving: a peer's ring is read only once all its mpi_before frames have come over MPI,
//     so its frames come out in the order it sent them. A streamed frame is delivered once its
//     last part is in.
//  6. forget: the segment is unmapped. A peer that died mid-write left no visible record; the
//     memory goes back to the system once neither process maps it (nothing is named).
//  7. Dozing (doorbell.hpp): a side sleeps on the bell of its incoming ring only once that ring
//     is all its peer sends on (switched, its mpi_before frames in) and nothing of its own
//     waits to move (no backlog, no stream, no unfinished MPI send to that peer). Peers that
//     have no ring (declined) doze as the inner transport allows.
//  8. Quiet inner transport: once every peer the inner transport serves sends and receives
//     through a ring (both directions switched, its mpi_before frames in) and no MPI send to
//     it is unfinished, nothing is left to come over MPI but a stray control message, and the
//     inner transport is polled at most every kQuietInnerGap. Over TCP each such poll is a
//     poll() system call (Open MPI's event loop, mpi_event_tick_rate=1), which made every
//     turn of a spinning loop ~1-3 µs long on the 2-vCPU test VM: a ring record waited for
//     the loop to come round. A new peer (a spawn) ends it until that peer has switched too.
// poll() reads the rings first, and the inner transport at least every kRingStreak frames, so
// MPI-only peers, control messages and large transfers are never starved by a busy ring.
// A stream moves only inside poll() on both sides, so while one is under way and moved
// recently, transferring() asks the caller to poll without sleeping.
#pragma once

#include "ppmpi/transport/shm_ring.hpp"
#include "ppmpi/transport/transport.hpp"

#include <deque>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace ppmpi {

class ShmTransport : public Transport {
  public:
    static constexpr std::size_t kRingBytes = std::size_t{1} << 20; // per direction
    static constexpr int kRingStreak = 16;
    static constexpr auto kQuietInnerGap = std::chrono::microseconds(50);

    // accept_offers=false: the master side declines every offer (PPMPI_SHM=0).
    explicit ShmTransport(std::unique_ptr<Transport> inner,
                          bool accept_offers = true,
                          std::size_t ring_bytes = kRingBytes);

    // Step 1 (worker side). False, with the reason, if no segment could be made here.
    bool offer(PeerId master, std::string& why);
    // Whether frames to `peer` now go through a ring (step 4 done on this side).
    bool sends_through_ring(PeerId peer) const;

    using Transport::post;
    void post(PeerId peer, Frame frame) override;
    void post_control(PeerId peer, Bytes bytes) override;
    std::optional<Envelope> poll() override;
    std::size_t unfinished_sends(PeerId peer) const override;
    void forget(PeerId peer) override;
    bool transferring(std::chrono::steady_clock::time_point now) const override;
    bool plan_doze(const std::vector<PeerId>& peers, Doze& plan) override;

  private:
    struct Pending {
        Frame frame;
        bool streamed = false; // too large for a Frame record: Begin, then Part records
        bool begun = false;    // its Begin record is written
        std::size_t written = 0; // bytes of its stream written so far
    };
    struct Incoming { // a streamed frame being read
        Frame frame;      // its memory, of its final sizes
        std::size_t received = 0;
    };
    struct Link {
        // Set while a ring is offered or in use; shared with a doze that sleeps on its bell.
        std::shared_ptr<ShmSegment> segment;
        ShmRing* out = nullptr;              // the ring this side writes
        ShmRing* in = nullptr;               // the ring this side reads
        bool switched = false;               // step 4 done for `out`
        std::uint64_t mpi_sent = 0;
        std::uint64_t mpi_received = 0;
        std::deque<Pending> backlog;
        std::optional<Incoming> incoming;
    };

    void switch_sending(Link& link);
    void drop_ring(PeerId peer);
    bool try_write(Link& link, Pending& record);
    bool try_stream(Link& link, Pending& record);
    void write_or_queue(Link& link, Pending record);
    void flush_backlogs();
    std::optional<Envelope> read_rings();
    std::optional<Envelope> read_ring(PeerId peer, Link& link);
    std::optional<Envelope> read_streamed(PeerId peer, Link& link);
    std::optional<Envelope> accept(Envelope envelope);
    void on_control(const Envelope& envelope);
    void on_offer(PeerId peer, const std::vector<std::string>& words);
    bool inner_due();
    bool ring_only() const;

    std::unique_ptr<Transport> inner_;
    bool accept_offers_;
    std::size_t ring_bytes_;
    std::string host_;
    std::unordered_map<PeerId, Link> links_;
    std::vector<PeerId> ring_peers_; // links with a segment, read round robin
    std::size_t next_ring_ = 0;
    int streak_ = 0; // frames read from rings since the inner transport was last polled
    std::chrono::steady_clock::time_point last_stream_move_{}; // a part written or read
    std::chrono::steady_clock::time_point last_inner_poll_{};
};

}  // namespace ppmpi
