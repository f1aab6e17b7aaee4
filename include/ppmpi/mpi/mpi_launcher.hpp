// ppmpi/mpi/mpi_launcher.hpp: the master's Launcher over MPI.
//
// Peer ids: world rank r is peer r (r = 1..N-1 of an mpirun world); spawned workers get ids
// from N upward, in request order. The workers asked for at once are spawned together, up to
// kMaxBatch in one MPI_Comm_spawn on MPI_COMM_SELF (one intercommunicator; rank i of its
// remote group is the batch's i-th peer), in the background by a SpawnQueue (a spawn can hang
// inside Open MPI: it is then abandoned and retried, and the stuck children end themselves,
// mpi_env.hpp).
// A spawn of one is disconnected by both sides once its worker said Goodbye. The processes of a
// spawn of several finalize together (MPI_Finalize is collective over them): each waits after
// its Goodbye for Release (protocol step 7), sent to all of them once the last said Goodbye
// (a worker retired alone stops serving at once and waits, idle, for its siblings); they are
// not disconnected. A spawn with a lost process is never disconnected and its other processes
// leave without finalizing; a world with a lost rank is never finalized: MPI_Comm_disconnect
// and MPI_Finalize would wait for it.
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
    // Spawns `worker_path worker_args...` (e.g. python3 -m ppmpi._worker_main, or ppmpi-worker).
    // `mpi` gets the peers; `transport` (mpi itself, or a transport layered on it) is told
    // which peers to forget.
    MpiLauncher(MpiTransport& mpi, Transport& transport, std::string worker_path,
                bmpi::communicator world, int world_size, std::vector<std::string> worker_args = {},
                bool threaded_spawns = true);
    ~MpiLauncher() override;

    static constexpr std::size_t kMaxBatch = 64;

    std::vector<PeerId> static_peers() override;
    std::vector<PeerId> spawn(std::size_t count) override;
    LaunchReport collect_launches() override;
    bool in_world(PeerId peer) const override { return peer < world_size_; }
    bool awaits_release(PeerId peer) const override;
    std::vector<Release> said_goodbye(PeerId peer) override;
    std::string describe(PeerId peer) const override;
    Domain domain(PeerId peer) const override;
    std::vector<Release> lost(PeerId peer) override;
    bool can_end_in_order(PeerId peer) const override;
    bool may_finalize(PeerId peer) const override;
    // MPI_Finalize would not wait forever: every spawn was disconnected and no world rank lost.
    bool finalize_is_safe() const;
    bool world_rank_lost() const { return world_lost_one_; }

  private:
    struct Group {
        MPI_Comm intercomm = MPI_COMM_NULL;
        std::vector<PeerId> members;  // by rank in the spawn
        std::size_t waiting = 0;      // processes that have not said Goodbye (or been lost)
        bool lost_one = false;        // a process of it was lost: never disconnect or finalize
        bool released = false;        // its processes were let go (a spawn of several)
    };
    void leave_group(PeerId peer);
    void join(std::vector<PeerId> peers, MPI_Comm intercomm);
    std::vector<Release> waiting_members(Group& group, bool finalize);
    const Group* group(PeerId peer) const;
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
