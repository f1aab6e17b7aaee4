// ppmpi/mpi/gang_comms.hpp: parallel jobs' communicators in a worker (job_runner.hpp, GangComms).
//
// Each worker holds a duplicate of its MPI world made for this alone (the mpirun world: with
// the master, right after the duplicate ppmpi's frames use; spawned workers: with those spawned
// together), so building a job's communicator never meets ppmpi's own traffic nor a job's.
// A job's communicator is MPI_Comm_create_group over the job's ranks of that duplicate: only
// those ranks take part (not the master, not busy workers). The worker needs
// MPI_THREAD_MULTIPLE: the job's thread calls MPI while the comm thread does.
#pragma once

#include "ppmpi/worker/job_runner.hpp"

#include <mpi.h>
#include <unordered_map>

namespace ppmpi {

class MpiGangComms : public GangComms {
  public:
    explicit MpiGangComms(MPI_Comm world_copy); // takes it over (freed by the destructor)
    ~MpiGangComms() override;
    MpiGangComms(const MpiGangComms&) = delete;
    MpiGangComms& operator=(const MpiGangComms&) = delete;

    std::int64_t open(const std::vector<std::int32_t>& ranks, int tag) override;
    void close(std::int64_t handle) override;

  private:
    MPI_Comm world_;
    std::unordered_map<std::int64_t, MPI_Comm> open_;
};

} // namespace ppmpi
