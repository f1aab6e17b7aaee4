#include "ppmpi/mpi/mpi_env.hpp"

#include <algorithm>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "ppmpi/core/exit_watch.hpp"
#include "ppmpi/core/log.hpp"
#include "ppmpi/master/mpirun_watch.hpp"
#include "ppmpi/mpi/gang_comms.hpp"
#include "ppmpi/mpi/mpi_launcher.hpp"
#include "ppmpi/mpi/mpi_transport.hpp"
#include "ppmpi/mpi/startup_barrier.hpp"
#include "ppmpi/transport/bell_transport.hpp"
#include "ppmpi/transport/shm_transport.hpp"

namespace ppmpi {

namespace {
// Shared-memory rings between the master and its spawned workers (shm_transport.hpp) and
// doorbells for its world ranks (bell_transport.hpp), unless PPMPI_SHM=0 (then everything goes
// over MPI, and idle workers poll, e.g. to compare).
bool shm_wanted() {
    const char* setting = std::getenv("PPMPI_SHM");
    return !setting || std::string(setting) != "0";
}

// After a lost world rank, mpirun may never end by itself (mpirun_watch.hpp).
void end_mpirun_if_it_hangs() {
    constexpr std::chrono::seconds kGrace{5};
    std::string why;
    if (watch_mpirun_after_exit(kGrace, why)) {
        log_debug("a world rank was lost: mpirun gets SIGTERM if it still runs 5 s after this "
                  "process ends (Open MPI 4.1 does not end it after a rank on another host died)");
    } else {
        log_debug("no mpirun watch: " + why);
    }
}

// A spawned worker's MPI_Init that never returns (spawn_queue.hpp) would leave this process
// behind for good: past the bound it ends itself. Other workers (mpirun's ranks) wait as long
// as MPI does: their start is a collective of the whole job, which mpirun itself supervises.
std::shared_ptr<MpiSession> start_worker_session() {
    const char* attempt = std::getenv(kSpawnAttemptVariable);
    // MULTIPLE: a parallel job's thread calls MPI while the comm thread does (gang_comms.hpp).
    if (!attempt) return start_patient_session(bmpi::threading::multiple);
    std::string name = attempt;
    ::unsetenv(kSpawnAttemptVariable);  // not for the jobs' own child processes
    ExitUnlessDoneWithin bounded(kSpawnedStartBound, 3,
                                 "ppmpi-worker: MPI start-up (spawn attempt " + name +
                                     ") did not finish in " +
                                     std::to_string(kSpawnedStartBound.count()) +
                                     " s; exiting (the master has started another worker)");
    return start_patient_session(bmpi::threading::multiple);
}

// A spawned worker offers the master a ring (its frames then go through shared memory), a world
// rank a doorbell (its frames stay on MPI, which on this host is shared memory already): either
// way it can doze while idle if the master is on its host (the master declines otherwise).
std::unique_ptr<Transport> offer_shared_memory(std::unique_ptr<MpiTransport> mpi, bool in_world) {
    if (!shm_wanted()) return mpi;
    std::string why;
    if (in_world) {
        auto bells = std::make_unique<BellTransport>(std::move(mpi));
        if (!bells->offer(0, why)) log_debug("no doorbell for the master to ring: " + why);
        return bells;
    }
    auto rings = std::make_unique<ShmTransport>(std::move(mpi));
    if (!rings->offer(0, why)) log_debug("no shared memory with the master: " + why);
    return rings;
}

// ppmpi's own copy of MPI_COMM_WORLD (freed when its last holder lets go), so no user MPI
// traffic meets ours. Made without spinning: the ranks that arrive first wait for the rest,
// rank 0 included, which may still be importing the driver's modules.
bmpi::communicator duplicate_world() {
    return bmpi::communicator(duplicate_asleep(MPI_COMM_WORLD), bmpi::comm_take_ownership);
}
}  // namespace

EnvironmentFactory mpi_master_environment(std::string worker_path,
                                          std::vector<std::string> worker_args) {
    return [worker_path, worker_args]() {
        apply_product_mpi_settings();
        auto session = [] {
            StartupBarrier met;
            return std::make_shared<MpiSession>(bmpi::threading::multiple);
        }();
        if (session->world_rank() != 0)
            throw MpiError("the ppmpi master must be rank 0 (this is rank " +
                           std::to_string(session->world_rank()) + ")");
        bmpi::communicator world(MPI_COMM_NULL, bmpi::comm_attach);  // empty
        // The second copy: the world ranks' own, for parallel jobs (gang_comms.hpp); made by
        // every rank of the world, this one included, and not used here.
        bmpi::communicator gang_world(MPI_COMM_NULL, bmpi::comm_attach);
        if (session->world_size() > 1) {
            world = duplicate_world();
            gang_world = duplicate_world();
        }
        auto mpi = std::make_unique<MpiTransport>();
        MpiTransport& mpi_view = *mpi;
        // Spawned workers of this host get rings; world ranks of this host get bells.
        auto bells = std::make_unique<BellTransport>(std::move(mpi));
        auto transport = std::make_unique<ShmTransport>(std::move(bells), shm_wanted());
        auto launcher = std::make_unique<MpiLauncher>(mpi_view, *transport, worker_path, world,
                                                      session->world_size(), worker_args,
                                                      session->multiple());
        MpiLauncher* launcher_view = launcher.get();
        MasterEnvironment env;
        env.session = session;
        env.transport = std::move(transport);
        env.launcher = std::move(launcher);
        env.borrowable = session->serialized();
        env.before_close = [session, launcher_view, gang_world](bool all_gone) {
            if (!all_gone || !launcher_view->finalize_is_safe()) session->skip_finalize();
            if (launcher_view->world_rank_lost()) end_mpirun_if_it_hangs();
        };
        return env;
    };
}

std::chrono::milliseconds mpi_start_bound(std::chrono::milliseconds at_least) {
    for (const char* name : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "SLURM_STEP_NUM_TASKS"}) {
        const char* value = std::getenv(name);
        if (!value) continue;
        auto per_rank = std::chrono::seconds(std::strtol(value, nullptr, 10));
        return std::max<std::chrono::milliseconds>(at_least, per_rank);
    }
    return at_least;
}

WorkerOptions mpi_worker_options() {
    WorkerOptions options;
    options.first_contact_timeout = mpi_start_bound(options.first_contact_timeout);
    return options;
}

// Rank 0 of its world (a world rank), or rank 0 of its parent's intercommunicator (spawned).
bmpi::communicator link_to_master(const MpiSession& session) {
    if (session.parent() != MPI_COMM_NULL)
        return bmpi::intercommunicator(session.parent(), bmpi::comm_attach);
    if (session.world_rank() == 0)
        throw MpiError("ppmpi-worker was started as rank 0; rank 0 must be the driver "
                       "(mpirun -np 1 python3 driver.py : -np N ppmpi-worker)");
    // Collective with the master's duplicate, made when rank 0 imports ppmpi. Not bounded: MPI
    // offers no timed collective. A driver that never imports ppmpi leaves these ranks here
    // until their start bound (mpi_worker_options) or mpirun ends the job.
    return duplicate_world();
}

WorkerEnvironmentFactory mpi_worker_environment() {
    return []() {
        apply_product_mpi_settings();
        auto session = start_worker_session();
        auto transport = std::make_unique<MpiTransport>();
        bool in_world = session->parent() == MPI_COMM_NULL;
        transport->add_peer(0, link_to_master(*session), 0);
        // Next, as the master makes its copies (or with the ones spawned together).
        auto gangs = std::make_shared<MpiGangComms>(duplicate_asleep(MPI_COMM_WORLD));
        transport->allow_socket_dozes();  // over TCP, an idle worker sleeps on its sockets
        WorkerEnvironment env;
        // Protocol step 7: a world rank, or one of several spawned together (their world),
        // finalizes with others and waits for Release; one spawned alone disconnects and goes.
        bool alone = !in_world && session->world_size() == 1;
        env.awaits_release = !alone;
        env.session = session;
        env.transport = offer_shared_memory(std::move(transport), in_world);
        env.master = 0;
        env.borrowable = session->serialized();
        env.gangs = std::move(gangs);
        env.before_close = [session, alone](bool clean) {
            if (!clean) {
                session->skip_finalize();
            } else if (alone) {  // the master disconnects its end as well
                MPI_Comm parent = session->parent();
                disconnect(parent);
            }  // the world duplicate is freed with the transport's last copy of it
        };
        return env;
    };
}

}  // namespace ppmpi
