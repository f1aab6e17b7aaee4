#include "ppmpi/mpi/gang_comms.hpp"

#include "ppmpi/core/errors.hpp"
#include "ppmpi/mpi/mpi_session.hpp"

namespace ppmpi {

MpiGangComms::MpiGangComms(MPI_Comm world_copy) : world_(world_copy) {}

MpiGangComms::~MpiGangComms() {
    int finalized = 0;
    MPI_Finalized(&finalized);
    if (finalized) return;
    for (auto& [handle, comm] : open_)
        MPI_Comm_free(&comm);
    MPI_Comm_free(&world_);
}

std::int64_t MpiGangComms::open(const std::vector<std::int32_t>& ranks, int tag) {
    MPI_Group world_group = MPI_GROUP_NULL, group = MPI_GROUP_NULL;
    check_mpi(MPI_Comm_group(world_, &world_group), "MPI_Comm_group");
    int status = MPI_Group_incl(world_group, static_cast<int>(ranks.size()), ranks.data(), &group);
    MPI_Group_free(&world_group);
    check_mpi(status, "MPI_Group_incl");
    MPI_Comm comm = MPI_COMM_NULL;
    status = MPI_Comm_create_group(world_, group, tag, &comm);
    MPI_Group_free(&group);
    check_mpi(status, "MPI_Comm_create_group");
    if (comm == MPI_COMM_NULL) throw MpiError("this worker is not one of its parallel job's ranks");
    return_errors(comm); // a job's MPI error is a Python exception, not the end of every rank
    auto handle = static_cast<std::int64_t>(MPI_Comm_c2f(comm));
    open_[handle] = comm;
    return handle;
}

void MpiGangComms::close(std::int64_t handle) {
    auto it = open_.find(handle);
    if (it == open_.end()) return;
    MPI_Comm_free(&it->second);
    open_.erase(it);
}

} // namespace ppmpi
