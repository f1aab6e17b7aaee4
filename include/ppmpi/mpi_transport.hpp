// ppmpi/mpi_transport.hpp: Transport over MPI point-to-point.
//
// A peer is (communicator, rank): the master's duplicate of MPI_COMM_WORLD for an mpirun
// world, or the intercommunicator of a spawn. All frames use one tag on communicators that only
// ppmpi uses, so they never meet a user's own MPI traffic.
//  - post: MPI_Isend from a buffer kept until MPI_Test says the send is done.
//  - poll: MPI_Test on unfinished sends, then MPI_Improbe + MPI_Mrecv (matched probe: the size
//    comes with the message and no other receive can take it) on each communicator in turn.
//  - forget: the peer's unfinished sends are abandoned, their buffers parked (a send to a dead
//    rank may never complete, and MPI may still read the buffer); frames from it are dropped.
#pragma once

#include <mpi.h>

#include <list>
#include <map>
#include <vector>

#include "ppmpi/transport.hpp"

namespace ppmpi {

class MpiTransport : public Transport {
  public:
    static constexpr int kTag = 0x7070;

    MpiTransport() = default;
    ~MpiTransport() override;
    MpiTransport(const MpiTransport&) = delete;
    MpiTransport& operator=(const MpiTransport&) = delete;

    // Registers the peer at (comm, rank) under the caller's chosen id.
    void add_peer(PeerId id, MPI_Comm comm, int rank);
    // Stops probing `comm` and forgets its peers; call before the communicator is freed.
    void drop_comm(MPI_Comm comm);

    void post(PeerId peer, Bytes frame) override;
    std::optional<Envelope> poll() override;
    std::size_t unfinished_sends(PeerId peer) const override;
    void forget(PeerId peer) override;

  private:
    struct Link {
        MPI_Comm comm = MPI_COMM_NULL;
        int rank = -1;
        bool forgotten = false;
    };
    struct Send {
        PeerId peer;
        MPI_Request request;
        Bytes buffer;
    };
    void complete_sends();
    std::optional<Envelope> receive_from(MPI_Comm comm);

    std::map<PeerId, Link> links_;
    std::map<std::pair<MPI_Comm, int>, PeerId> by_address_;
    std::vector<MPI_Comm> comms_;
    std::size_t next_comm_ = 0;  // round robin, so one busy communicator cannot starve others
    std::list<Send> sends_;
    std::list<Send> abandoned_;
};

}  // namespace ppmpi
