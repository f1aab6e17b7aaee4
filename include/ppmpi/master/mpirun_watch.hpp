// ppmpi/master/mpirun_watch.hpp: ending an mpirun that would outlive its job.
//
// Measured with Open MPI 4.1.4 under --enable-recovery, on simulated hosts
// (tests/cluster): once a rank on another host dies, that host's daemon stops reporting its
// other ranks' ends, so mpirun waits for ever after every rank has exited (MPI_Abort does not
// end it either; SIGTERM does, in ~2 s, and takes the daemons down). A master that lost a
// world rank therefore leaves a watcher behind: a detached shell that waits for this process
// to exit, gives mpirun `grace` to end by itself, and only then sends it SIGTERM (twice, 5 s
// apart). Nothing happens when mpirun ends on its own, or when this process was not started
// by mpirun (or its daemon), e.g. under srun or alone.
#pragma once

#include <chrono>
#include <string>

namespace ppmpi {

// The pid of this process's parent if it is Open MPI's launcher or daemon (mpirun, mpiexec,
// orterun, orted), else 0.
long mpirun_parent();

// Starts the watcher described above; false if there is no mpirun parent or the watcher
// could not start (`why` says which).
bool watch_mpirun_after_exit(std::chrono::seconds grace, std::string& why);

}  // namespace ppmpi
