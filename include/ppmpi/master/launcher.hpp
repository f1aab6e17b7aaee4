// ppmpi/master/launcher.hpp: how the master gets worker processes and lets them go.
//
// The MPI implementation (mpi_launcher.hpp) spawns workers with MPI_Comm_spawn and knows the
// ranks of an mpirun world; tests use a fake that starts worker loops as threads.
// All calls come from the thread that owns the transport.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

#include "ppmpi/transport/transport.hpp"

namespace ppmpi {

class Launcher {
  public:
    virtual ~Launcher() = default;
    // Worker ranks that exist from the start (ranks 1..N-1 of an mpirun world).
    virtual std::vector<PeerId> static_peers() = 0;
    // Starts `count` new worker processes and returns their peers. May return before they
    // exist (MPI: the spawns run in the background, spawn_queue.hpp); a peer's Hello says it
    // is there. Throws PpmpiError naming what failed if no launch is possible at all.
    virtual std::vector<PeerId> spawn(std::size_t count) = 0;
    // Background launches that ended badly since the last call: peers that will never start
    // (with why), and peers of processes started twice (a retried launch whose first attempt
    // came back late) that nobody asked for: tell them to leave once they said Hello.
    struct LaunchReport {
        std::vector<std::pair<PeerId, std::string>> failed;
        std::vector<PeerId> surplus;
    };
    virtual LaunchReport collect_launches() { return {}; }
    // Whether this peer lives in the master's MPI world (a world rank: attached from the start,
    // and never disconnected).
    virtual bool in_world(PeerId peer) const = 0;
    // Whether, after its Goodbye, the peer waits for M→W Release (protocol step 7) instead of
    // leaving at once: a world rank, or a process spawned together with others (MPI_Finalize
    // is collective over the processes that started together).
    virtual bool awaits_release(PeerId peer) const { return in_world(peer); }
    // A Release that may be sent now: to `peer`, finalizing or not.
    struct Release {
        PeerId peer;
        bool finalize;
    };
    // The peer said Goodbye: release what connects us to it once it is safe (for MPI: an
    // MPI_Comm_disconnect once a spawn of one said Goodbye). Returns the peers that may now be
    // released: the processes of a spawn of several, once the last of them said Goodbye.
    virtual std::vector<Release> said_goodbye(PeerId peer) = 0;
    // The MPI world the peer shares with other workers and its rank there: the mpirun world
    // (domain 0), or the workers spawned together. Workers of one domain can run a parallel
    // job together (gangs.hpp); domain -1: none.
    struct Domain {
        int id = -1;
        int rank = 0;
    };
    virtual Domain domain(PeerId) const { return {}; }
    // A short name for logs and statistics, e.g. the MPI rank.
    virtual std::string describe(PeerId peer) const = 0;
    // The peer was declared lost: never talk to it again, and never wait for anything that
    // needs it (for MPI: its spawn's disconnect, or the world's finalize). Returns the peers
    // that waited for Release together with it: they may no longer finalize.
    virtual std::vector<Release> lost(PeerId peer) = 0;
    // Whether the peer can still end in order (Goodbye, then disconnect or finalize), i.e. no
    // process it shares MPI collectives with was lost.
    virtual bool can_end_in_order(PeerId peer) const = 0;
    // At the master's end, for a peer still waiting for Release: whether it may finalize (every
    // process it finalizes with said Goodbye, none was lost).
    virtual bool may_finalize(PeerId peer) const { return can_end_in_order(peer); }
};

}  // namespace ppmpi
