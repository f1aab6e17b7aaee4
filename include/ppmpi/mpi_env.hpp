// ppmpi/mpi_env.hpp: starting and ending MPI, and the environments the two kinds of process
// build on their comm thread.
//
// Settings the product needs on any machine are applied before MPI_Init unless the user set
// them already (README "MPI settings"):
//  - OMPI_MCA_rmaps_base_oversubscribe=1: a master plus one worker per CPU is one process more
//    than there are slots;
//  - OMPI_MCA_mpi_yield_when_idle=0: no sched_yield inside MPI calls (our loops poll and sleep
//    with their own backoff; a yield inside a turn parks the thread holding the baton);
//  - OMPI_MCA_orte_enable_recovery=1: one dead worker must not make Open MPI kill the job;
//  - EVENT_NOEPOLL=1: the singleton's runtime daemon polls its PMIx sockets with poll(), not
//    epoll, which PMIx 4.2 leaves stale (the root cause of the spawn hang, spawn_queue.hpp);
//  - OMPI_MCA_mpi_event_tick_rate=1: TCP is polled on every progress call, also after a peer
//    failed (Open MPI otherwise drops to one poll per ~10 ms then);
//  - OMPI_MCA_btl_tcp_rdma_pipeline_frag_size=1 MiB: large data over TCP moves in pipelined
//    fragments (64 MiB to a spawned worker: 3.6 → 5.7 GiB/s each way).
// Settings that only a sandbox needs (running as root) are not applied: see scripts/mpi_env.sh.
#pragma once

#include <mpi.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "ppmpi/master.hpp"
#include "ppmpi/worker.hpp"

namespace ppmpi {

// Set in a spawned worker's environment by its master (the attempt's name, spawn_queue.hpp).
// Such a worker ends itself if its MPI start-up does not finish within kSpawnedStartBound: a
// spawn hanging in Open MPI leaves the child stuck in PMIx_Init for good, and the master has
// already abandoned that attempt and started another.
inline constexpr const char* kSpawnAttemptVariable = "PPMPI_SPAWN_ATTEMPT";
inline constexpr std::chrono::seconds kSpawnedStartBound{30};

// Throws MpiError naming `call` and MPI's error text if rc is not MPI_SUCCESS.
void check_mpi(int rc, const char* call);

void apply_product_mpi_settings();

// MPI for this process: MPI_Init_thread on construction, on the calling thread (the comm
// thread; others call MPI only under its baton, and on the master spawn attempts run on
// threads of their own, hence `level` MULTIPLE there); MPI_Finalize on destruction, on the
// same thread, unless skip_finalize() was called (finalize waits for peers, and a hung peer
// never answers).
class MpiSession {
  public:
    explicit MpiSession(int level = MPI_THREAD_SERIALIZED);
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    void skip_finalize() { finalize_ = false; }
    int world_rank() const { return world_rank_; }
    int world_size() const { return world_size_; }
    MPI_Comm parent() const { return parent_; }
    // Whether threads other than the initialising one may call MPI (one at a time).
    bool serialized() const { return provided_ >= MPI_THREAD_SERIALIZED; }
    bool multiple() const { return provided_ >= MPI_THREAD_MULTIPLE; }

  private:
    int provided_ = MPI_THREAD_SINGLE;
    int world_rank_ = 0;
    int world_size_ = 1;
    MPI_Comm parent_ = MPI_COMM_NULL;
    bool finalize_ = true;
};

// Rank 0: world ranks 1..N-1 (if any) become static workers; more are spawned from
// `worker_path` (the ppmpi-worker executable).
EnvironmentFactory mpi_master_environment(std::string worker_path,
                                          std::vector<std::string> worker_args = {});

// A worker: talks to its parent (spawned) or to rank 0 of its world (mpirun / MPMD).
WorkerEnvironmentFactory mpi_worker_environment();

}  // namespace ppmpi
