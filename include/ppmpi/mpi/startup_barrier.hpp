// ppmpi/mpi/startup_barrier.hpp: the ranks of a job meet, asleep, before MPI_Init.
//
// MPI_Init waits for every rank of the job, and Open MPI 4.1 waits by polling (progress, then
// usleep(100), over and over). Hundreds of ranks starting on a few cores arrive one after
// another (each first imports Python), and those already waiting took the cores from those
// still starting: 128 C ranks on 2 cores spent 54 s of CPU to start, 35 s of wall time.
// So every rank of the job (master and workers alike: the barrier needs them all) first
// meets the others in a PMIx fence, in which the PMIx client sleeps on a condition variable;
// MPI_Init then finds every rank there at once (128 C ranks: 30 s of CPU, 22.5 s).
// Where the launcher speaks no PMIx (a singleton), there is nothing to wait for.
#pragma once

namespace ppmpi {

// Constructed before MPI_Init, destroyed after it: the PMIx client this process uses is kept
// open meanwhile (PMIx counts its users; closing it before MPI_Init opens it again makes
// Open MPI's start fail).
class StartupBarrier {
  public:
    // Waits, asleep, until every process of this job has come here too (or the fence fails,
    // or no PMIx launcher started this process: then MPI_Init proceeds alone).
    StartupBarrier();
    ~StartupBarrier();
    StartupBarrier(const StartupBarrier&) = delete;
    StartupBarrier& operator=(const StartupBarrier&) = delete;

  private:
    bool open_ = false;
};

}  // namespace ppmpi
