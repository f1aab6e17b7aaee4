// ppmpi/mpi/mpi_transport.hpp: Transport over MPI point-to-point, written with Boost.MPI.
//
// A peer is (communicator, rank): the master's duplicate of MPI_COMM_WORLD for an mpirun
// world, or the intercommunicator of a spawn. Communicators are ppmpi's own, so no user MPI
// traffic meets these tags. Raw bytes go as arrays of char: Boost.MPI sends those as an MPI
// datatype, with no serialization and no copy.
//  - post, a frame without buffers: one isend (tag kTag) from the frame's bytes.
//  - post, a frame with buffers: isend (kTagWithBuffers) of [u32 n, u64 chunk size,
//    u64 size × n, frame],
//    then each buffer in chunks of at most kChunkBytes (kTagBuffer), straight from its memory.
//    Everything sent is kept (the buffers' owners too) until its request tests done.
//  - poll: test on unfinished sends; iprobe (any source, any tag) + recv of what it found, on
//    each communicator in turn. Only one thread calls MPI at a time (baton.hpp) and nobody else
//    receives on these communicators, so the recv takes exactly the probed message (no matched
//    probe needed). A frame with buffers gets an irecv per chunk, into freshly allocated
//    Buffers, posted before the next probe (so no probe can match its chunks), and is delivered
//    once test_all says they completed; later frames from the same peer wait behind it, keeping
//    the order. A chunk that a probe does match belongs to a frame that was dropped, and is
//    drained.
//  - post_control: one isend (kTagControl); poll delivers it as soon as it is matched.
//  - forget: the peer's unfinished sends and receives are abandoned, their memory kept (a
//    transfer with a dead rank may never complete, and MPI may still use the memory).
//  - plan_doze: over TCP, what a peer sends makes one of this process's sockets readable, so a
//    caller may doze on them (doorbell.hpp) instead of polling. The plan's re-check probes MPI
//    (its frame is kept for the next poll). A socket still readable after a probe found
//    nothing is not MPI's (a job's): left out. Where MPI moves data without sockets (shared
//    memory, InfiniBand), a doze would only end at its deadline: until a frame has once been
//    found after a socket ended a doze, dozes last at most kUnprovenDoze (a poll, as before);
//    after kMissesToGiveUp dozes that ran out and then found a frame waiting, none are offered.
// Boost.MPI's exceptions leave as MpiError.
#pragma once

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/request.hpp>
#include <list>
#include <map>
#include <vector>

#include "ppmpi/transport/transport.hpp"

namespace ppmpi {

class MpiTransport : public Transport {
  public:
    static constexpr int kTag = 0x7070;
    static constexpr int kTagWithBuffers = 0x7071;
    static constexpr int kTagBuffer = 0x7072;
    static constexpr int kTagControl = 0x7073;
    static constexpr std::size_t kChunkBytes = std::size_t{1} << 30;  // under MPI's int count

    // chunk_bytes: the largest MPI message a buffer is sent in (smaller in tests).
    explicit MpiTransport(std::size_t chunk_bytes = kChunkBytes) : chunk_bytes_(chunk_bytes) {}
    ~MpiTransport() override;
    MpiTransport(const MpiTransport&) = delete;
    MpiTransport& operator=(const MpiTransport&) = delete;

    // Registers the peer at (comm, rank) under the caller's chosen id.
    void add_peer(PeerId id, const boost::mpi::communicator& comm, int rank);
    // Stops probing `comm` and forgets its peers; call before the communicator is freed.
    void drop_comm(MPI_Comm comm);

    using Transport::post;
    void post(PeerId peer, Frame frame) override;
    void post_control(PeerId peer, Bytes bytes) override;
    std::optional<Envelope> poll() override;
    std::size_t unfinished_sends(PeerId peer) const override;
    void forget(PeerId peer) override;
    bool transferring(std::chrono::steady_clock::time_point now) const override;
    std::size_t live_peers() const override { return live_peers_; }
    // Only a worker dozes on sockets (a master whose workers share its host would miss their
    // frames until each doze's deadline before it learnt not to).
    void allow_socket_dozes() { socket_dozes_ = true; }
    bool plan_doze(const std::vector<PeerId>& peers, Doze& plan) override;
    static constexpr int kMissesToGiveUp = 3;
    static constexpr auto kUnprovenDoze = std::chrono::milliseconds(2);

  private:
    struct Link {
        boost::mpi::communicator comm;
        int rank = -1;
        bool forgotten = false;
    };
    struct Send {
        PeerId peer;
        boost::mpi::request request;
        Bytes bytes;
        Buffer keep;  // the buffer a chunk is sent from
    };
    struct Incoming {
        Envelope envelope;
        std::vector<boost::mpi::request> requests;  // one per chunk of its buffers
    };
    struct SocketDoze {  // plan_doze's state
        std::vector<int> sockets;
        std::vector<int> deaf;  // readable, yet not MPI's
        std::chrono::steady_clock::time_point refreshed{}, until{};
        std::uint64_t delivered = 0;  // frames polled when the last doze was planned
        int misses = 0;
        bool off = false;
        bool woke_on_fd = false;  // the last doze was ended by a socket
        bool proven = false;      // a frame once came right after a socket ended a doze
    };
    void post_frame(PeerId peer, Frame frame);
    void count_miss(std::chrono::steady_clock::time_point now);
    std::vector<int> sockets_to_watch(std::chrono::steady_clock::time_point now);
    void isend(const Link& link, int tag, const char* data, std::size_t size, Send send);
    void complete_sends();
    std::optional<Envelope> next_complete_incoming();
    std::optional<Envelope> poll_rounds();
    std::optional<Envelope> receive_from(const boost::mpi::communicator& comm, bool& found);
    void receive_buffers(const Link& link, Incoming& incoming);
    bool waiting_behind(PeerId peer) const;

    std::map<PeerId, Link> links_;
    std::map<std::pair<MPI_Comm, int>, PeerId> by_address_;
    std::vector<boost::mpi::communicator> comms_;
    std::size_t next_comm_ = 0;  // round robin, so one busy communicator cannot starve others
    std::list<Send> sends_;
    std::list<Send> abandoned_;
    std::list<Incoming> incoming_;
    std::list<Incoming> abandoned_incoming_;
    std::chrono::steady_clock::time_point last_transfer_event_{};
    std::chrono::steady_clock::time_point last_poll_{};
    std::size_t chunk_bytes_;
    std::size_t live_peers_ = 0;  // links not forgotten
    std::map<PeerId, std::size_t> unfinished_;  // sends per peer (in sends_)
    std::optional<Envelope> stash_;  // found by a doze's re-check: poll returns it first
    std::uint64_t delivered_ = 0;    // frames poll has returned
    SocketDoze doze_;
    bool socket_dozes_ = false;
};

}  // namespace ppmpi
