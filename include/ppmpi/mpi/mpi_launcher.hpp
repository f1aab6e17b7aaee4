// ppmpi/mpi/mpi_launcher.hpp: the master's Launcher over MPI.
//
// Peer ids: world rank r is peer r (r = 1..N-1 of an mpirun world); spawned workers get ids
// from N upward, in request order. Each worker is its own MPI_Comm_spawn of one ppmpi-worker
// on MPI_COMM_SELF, giving one intercommunicator per worker (see spawn() for why), run in the
// background by a SpawnQueue (a spawn can hang inside Open MPI: it is then abandoned and
// retried, and the stuck child ends itself, mpi_env.hpp); once it has
// said Goodbye (and so is about to disconnect), the master disconnects that intercommunicator
// too. A spawn with a lost process is never disconnected, and a world with
// a lost rank is never finalized: MPI_Comm_disconnect and MPI_Finalize would wait for it.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "ppmpi/master/launcher.hpp"
#include "ppmpi/master/spawn_queue.hpp"
#include "ppmpi/mpi/mpi_session.hpp"
#include "ppmpi/mpi/mpi_transport.hpp"

namespace ppmpi {

class MpiLauncher : public Launcher {
  public:
    // `world` is the master's duplicate of MPI_COMM_WORLD (empty if the world is just the
    // master).
    // Spawns `worker_path worker_args...` (e.g. python3 -m ppmpi._serve, or ppmpi-worker).
    // `mpi` gets the peers; `transport` (mpi itself, or a transport layered on it) is told
    // which peers to forget.
    MpiLauncher(MpiTransport& mpi, Transport& transport, std::string worker_path,
                bmpi::communicator world, int world_size, std::vector<std::string> worker_args = {},
                bool threaded_spawns = true);
    ~MpiLauncher() override;

    std::vector<PeerId> static_peers() override;
    std::vector<PeerId> spawn(std::size_t count) override;
    LaunchReport collect_launches() override;
    bool in_world(PeerId peer) const override { return peer < world_size_; }
    void said_goodbye(PeerId peer) override;
    std::string describe(PeerId peer) const override;
    void lost(PeerId peer) override;
    bool can_end_in_order(PeerId peer) const override;
    // MPI_Finalize would not wait forever: every spawn was disconnected and no world rank lost.
    bool finalize_is_safe() const;
    bool world_rank_lost() const { return world_lost_one_; }

  private:
    void leave_group(PeerId peer);
    void join(PeerId peer, MPI_Comm intercomm);
    struct Group {
        MPI_Comm intercomm = MPI_COMM_NULL;
        std::size_t waiting = 0;  // processes that have not said Goodbye
        bool lost_one = false;    // a process of it was lost: never disconnect
    };
    MpiTransport& mpi_;
    Transport& transport_;
    std::string worker_path_;
    std::vector<std::string> worker_args_;
    bmpi::communicator world_;
    int world_size_;
    PeerId next_peer_;
    SpawnQueue spawns_;
    bool world_lost_one_ = false;
    std::vector<Group> groups_;
    std::map<PeerId, std::size_t> group_of_;
};

}  // namespace ppmpi
