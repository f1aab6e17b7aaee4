// ppmpi/mpi/mpi_session.hpp: MPI for this process (Boost.MPI's environment), the settings the
// product applies before MPI starts, and the raw MPI calls Boost.MPI 1.74 lacks.
//
// Settings the product needs on any machine are applied before MPI starts unless the user set
// them already (docs/openmpi-4.1-notes.md, "MPI settings"):
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
//    fragments, not in one piece after a rendezvous (docs/performance.md has the gain).
// Settings that only a sandbox needs (running as root) are not applied: see scripts/mpi_env.sh.
#pragma once

#include <mpi.h>

#include <boost/mpi/communicator.hpp>
#include <boost/mpi/environment.hpp>
#include <boost/mpi/intercommunicator.hpp>
#include <boost/mpi/exception.hpp>
#include <memory>
#include <string>

#include "ppmpi/core/errors.hpp"

namespace ppmpi {

namespace bmpi = boost::mpi;

void apply_product_mpi_settings();

// Throws MpiError naming `call` and MPI's error text if rc is not MPI_SUCCESS (for the raw
// calls below; Boost.MPI's own calls throw boost::mpi::exception, see translate_mpi_errors).
void check_mpi(int rc, const char* call);

// Runs `body`, turning a boost::mpi::exception it throws into ppmpi's MpiError.
template <class Body> decltype(auto) translate_mpi_errors(Body&& body) {
    try {
        return body();
    } catch (const bmpi::exception& e) {
        throw MpiError(std::string(e.what()));
    }
}

// Raw MPI, each wrapped once: Boost.MPI 1.74 has no error handlers, no parent communicator,
// no MPI_Comm_disconnect and no nonblocking MPI_Comm_idup.
void return_errors(MPI_Comm comm);  // errors come back as codes, never abort the job
MPI_Comm parent_comm();             // MPI_COMM_NULL unless this process was spawned
void disconnect(MPI_Comm& comm);    // waits for the remote side's own disconnect
// MPI_Comm_dup of `comm` as MPI_Comm_idup, waited for asleep between tests (a blocking
// collective spins a core per rank that waits in it). Not bounded: MPI has no timed
// collective; nobody calls it before every rank of `comm` is known to come (the world).
MPI_Comm duplicate_asleep(MPI_Comm comm);

// For `python -m ppmpi --check`: the MPI library's own description of itself
// (MPI_Get_library_version, valid before MPI starts), and the thread level MPI provides in
// this process ("" while MPI is not running in it).
std::string mpi_library_version();
std::string mpi_thread_level();

// MPI for this process: initialised on construction, on the calling thread (the comm thread;
// others call MPI only under its baton, and on the master spawn attempts run on threads of
// their own, hence `level` multiple there); finalized on destruction, on the same thread,
// unless skip_finalize() was called (MPI_Finalize waits for peers, and a hung peer never
// answers).
class MpiSession {
  public:
    explicit MpiSession(bmpi::threading::level level = bmpi::threading::serialized);
    ~MpiSession();
    MpiSession(const MpiSession&) = delete;
    MpiSession& operator=(const MpiSession&) = delete;

    void skip_finalize() { finalize_ = false; }
    const bmpi::communicator& world() const { return world_; }
    int world_rank() const { return world_rank_; }
    int world_size() const { return world_size_; }
    MPI_Comm parent() const { return parent_; }
    // Whether threads other than the initialising one may call MPI (one at a time).
    bool serialized() const { return provided_ >= bmpi::threading::serialized; }
    bool multiple() const { return provided_ >= bmpi::threading::multiple; }

  private:
    std::unique_ptr<bmpi::environment> environment_;
    bmpi::threading::level provided_ = bmpi::threading::single;
    bmpi::communicator world_;  // MPI_COMM_WORLD, attached
    int world_rank_ = 0;
    int world_size_ = 1;
    MPI_Comm parent_ = MPI_COMM_NULL;
    bool finalize_ = true;
};

// A session whose MPI_Init runs on a thread of its own at the lowest priority (nice 19), the
// thread that also finalizes it when the last holder lets go (MPI wants both on one thread;
// others may call MPI in between, one at a time). Why: MPI_Init waits for every rank of the
// job by polling (Open MPI 4.1: progress, usleep(100), again), so ranks already waiting in it
// took the cores from those still starting up (Python's imports): 256 ranks on 2 cores spent
// 150 s of CPU inside MPI_Init and took 93 s to start. At nice 19 the waiting ones yield.
// For workers only: the threads MPI_Init starts inherit the priority, and the master's spawns
// go through them.
std::shared_ptr<MpiSession> start_patient_session(
    bmpi::threading::level level = bmpi::threading::serialized);

}  // namespace ppmpi
