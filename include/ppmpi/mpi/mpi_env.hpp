// ppmpi/mpi/mpi_env.hpp: the environments the two kinds of process build on their comm thread
// from MPI (mpi_session.hpp): a master's transport and launcher, a worker's link to its master.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "ppmpi/master/master.hpp"
#include "ppmpi/mpi/mpi_session.hpp"
#include "ppmpi/worker/worker.hpp"

namespace ppmpi {

// Set in a spawned worker's environment by its master (the attempt's name, spawn_queue.hpp).
// Such a worker ends itself if its MPI start-up does not finish within kSpawnedStartBound: a
// spawn hanging in Open MPI leaves the child stuck in PMIx_Init for good, and the master has
// already abandoned that attempt and started another.
inline constexpr const char* kSpawnAttemptVariable = "PPMPI_SPAWN_ATTEMPT";
inline constexpr std::chrono::seconds kSpawnedStartBound{30};

// Rank 0: world ranks 1..N-1 (if any) become static workers; more are spawned from
// `worker_path worker_args...` (python3 running ppmpi._worker_main, or ppmpi-worker).
EnvironmentFactory mpi_master_environment(std::string worker_path,
                                          std::vector<std::string> worker_args = {});

// A worker: talks to its parent (spawned) or to rank 0 of its world (mpirun / MPMD).
WorkerEnvironmentFactory mpi_worker_environment();
// MPI start-up is a collective of the whole world, and hundreds of ranks on a few cores start
// one after another: its bound is a second per rank of this process's world (as its launcher
// tells), and at least `at_least`.
std::chrono::milliseconds mpi_start_bound(std::chrono::milliseconds at_least);
// Its options: first contact bounded by mpi_start_bound (at least the default 120 s).
WorkerOptions mpi_worker_options();

}  // namespace ppmpi
