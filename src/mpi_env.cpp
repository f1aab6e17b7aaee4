#include "ppmpi/mpi_env.hpp"

#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <mutex>
#include <thread>

#include "ppmpi/errors.hpp"
#include "ppmpi/log.hpp"
#include "ppmpi/mpi_launcher.hpp"
#include "ppmpi/mpi_transport.hpp"
#include "ppmpi/mpirun_watch.hpp"
#include "ppmpi/shm_transport.hpp"

namespace ppmpi {

void check_mpi(int rc, const char* call) {
    if (rc == MPI_SUCCESS) return;
    char text[MPI_MAX_ERROR_STRING] = {0};
    int length = 0;
    MPI_Error_string(rc, text, &length);
    throw MpiError(std::string(call) + " failed: " + std::string(text, static_cast<std::size_t>(length)));
}

void apply_product_mpi_settings() {
    const int keep_user_value = 0;
    ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", keep_user_value);
    // No sched_yield inside MPI calls: our loops poll and sleep with their own backoff, and a
    // yield inside a turn gives the core away while that thread holds the baton (round trip
    // to a spawned worker: 64 µs with yields, 34 µs without; README "Performance").
    ::setenv("OMPI_MCA_mpi_yield_when_idle", "0", keep_user_value);
    ::setenv("OMPI_MCA_orte_enable_recovery", "1", keep_user_value);
    // The root cause of the spawn hang (spawn_queue.hpp): PMIx 4.2's server closes a finished
    // client's socket without removing its libevent read event, so with epoll the next
    // client that gets the same fd number is never read (it waits in PMIx_Init for good;
    // openpmix PR 4279). libevent's poll backend has no such state. Inherited by the
    // singleton's orted, which is started inside MPI_Init.
    ::setenv("EVENT_NOEPOLL", "1", keep_user_value);
    // Poll TCP on every progress call. Open MPI otherwise falls back to polling it every
    // ~10 ms once a TCP peer has failed (measured: each later round trip took ~12 ms instead
    // of ~0.3 ms after a worker died with a message on its way to it).
    ::setenv("OMPI_MCA_mpi_event_tick_rate", "1", keep_user_value);
    // Large messages over TCP (a singleton's spawned workers have no shared memory) move in
    // pipelined fragments of 1 MiB instead of one 2 GiB fragment, so the sender's and the
    // receiver's copies overlap. Measured, 64 MiB echo to one spawned worker: 3.6 GiB/s each
    // way by default; fragments of 256 KiB 3.7, 512 KiB 4.8-5.1, 1 MiB 5.6-5.9, 2 MiB 5.2,
    // 8 MiB 4.3-4.6.
    ::setenv("OMPI_MCA_btl_tcp_rdma_pipeline_frag_size", "1048576", keep_user_value);
}

MpiSession::MpiSession(int level) {
    int initialized = 0;
    MPI_Initialized(&initialized);
    if (initialized) throw MpiError("MPI is already initialised in this process by someone else");
    // SERIALIZED: a thread that waits for a message may drive the comm loop itself, one thread
    // at a time (baton.hpp). Open MPI adds no locking for it (only MULTIPLE does).
    check_mpi(MPI_Init_thread(nullptr, nullptr, level, &provided_), "MPI_Init_thread");
    // Errors come back as codes (turned into exceptions), never as an abort of the whole job.
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(MPI_COMM_SELF, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &world_rank_);
    MPI_Comm_size(MPI_COMM_WORLD, &world_size_);
    MPI_Comm_get_parent(&parent_);
    if (parent_ != MPI_COMM_NULL) MPI_Comm_set_errhandler(parent_, MPI_ERRORS_RETURN);
}

MpiSession::~MpiSession() {
    if (finalize_) MPI_Finalize();
}

namespace {
// Shared-memory rings between the master and its spawned workers (shm_transport.hpp), unless
// PPMPI_SHM=0 (then everything goes over MPI, e.g. to compare).
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
    if (!attempt) return std::make_shared<MpiSession>();
    std::string name = attempt;
    ::unsetenv(kSpawnAttemptVariable);  // not for the jobs' own child processes
    std::mutex mutex;
    std::condition_variable started_cv;
    bool started = false;
    std::thread watchdog([&] {
        std::unique_lock<std::mutex> lock(mutex);
        if (started_cv.wait_for(lock, kSpawnedStartBound, [&] { return started; })) return;
        std::fprintf(stderr,
                     "ppmpi-worker: MPI start-up (spawn attempt %s) did not finish in %lld s; "
                     "exiting (the master has started another worker)\n",
                     name.c_str(), static_cast<long long>(kSpawnedStartBound.count()));
        std::_Exit(3);
    });
    auto finish = [&] {
        {
            std::lock_guard<std::mutex> lock(mutex);
            started = true;
        }
        started_cv.notify_one();
        watchdog.join();
    };
    try {
        auto session = std::make_shared<MpiSession>();
        finish();
        return session;
    } catch (...) {
        finish();
        throw;
    }
}

MPI_Comm duplicate_world() {
    MPI_Comm dup = MPI_COMM_NULL;
    check_mpi(MPI_Comm_dup(MPI_COMM_WORLD, &dup), "MPI_Comm_dup");
    MPI_Comm_set_errhandler(dup, MPI_ERRORS_RETURN);
    return dup;
}
}  // namespace

EnvironmentFactory mpi_master_environment(std::string worker_path,
                                          std::vector<std::string> worker_args) {
    return [worker_path, worker_args]() {
        apply_product_mpi_settings();
        auto session = std::make_shared<MpiSession>(MPI_THREAD_MULTIPLE);
        if (session->world_rank() != 0)
            throw MpiError("the ppmpi master must be rank 0 (this is rank " +
                           std::to_string(session->world_rank()) + ")");
        MPI_Comm world = session->world_size() > 1 ? duplicate_world() : MPI_COMM_NULL;
        auto mpi = std::make_unique<MpiTransport>();
        MpiTransport& mpi_view = *mpi;
        auto transport = std::make_unique<ShmTransport>(std::move(mpi), shm_wanted());
        auto launcher = std::make_unique<MpiLauncher>(mpi_view, *transport, worker_path, world,
                                                      session->world_size(), worker_args,
                                                      session->multiple());
        MpiLauncher* launcher_view = launcher.get();
        MasterEnvironment env;
        env.session = session;
        env.transport = std::move(transport);
        env.launcher = std::move(launcher);
        env.borrowable = session->serialized();
        env.before_close = [session, launcher_view](bool all_gone) {
            if (!all_gone || !launcher_view->finalize_is_safe()) session->skip_finalize();
            if (launcher_view->world_rank_lost()) end_mpirun_if_it_hangs();
        };
        return env;
    };
}

WorkerEnvironmentFactory mpi_worker_environment() {
    return []() {
        apply_product_mpi_settings();
        auto session = start_worker_session();
        auto transport = std::make_unique<MpiTransport>();
        WorkerEnvironment env;
        MPI_Comm link = session->parent();
        env.in_world = link == MPI_COMM_NULL;
        if (env.in_world) {
            if (session->world_rank() == 0)
                throw MpiError("ppmpi-worker was started as rank 0; rank 0 must be the driver "
                               "(mpirun -np 1 python3 driver.py : -np N ppmpi-worker)");
            // Collective with the master's duplicate, made when rank 0 imports ppmpi. Not
            // bounded: MPI offers no timed collective. A driver that never imports ppmpi leaves
            // these ranks here until mpirun ends the job (README "Launch modes").
            link = duplicate_world();
        }
        transport->add_peer(0, link, 0);
        env.session = session;
        env.transport = std::move(transport);
        if (!env.in_world && shm_wanted()) {  // a spawned worker offers the master a ring
            auto rings = std::make_unique<ShmTransport>(std::move(env.transport));
            std::string why;
            if (!rings->offer(0, why)) log_debug("no shared memory with the master: " + why);
            env.transport = std::move(rings);
        }
        env.master = 0;
        env.borrowable = session->serialized();
        bool spawned = !env.in_world;
        env.before_close = [session, link, spawned](bool clean) mutable {
            if (!clean) {
                session->skip_finalize();
            } else if (spawned) {
                MPI_Comm_disconnect(&link);
            } else {
                MPI_Comm_free(&link);
            }
        };
        return env;
    };
}

}  // namespace ppmpi
