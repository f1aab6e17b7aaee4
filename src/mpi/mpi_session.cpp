#include "ppmpi/mpi/mpi_session.hpp"

#include "ppmpi/core/backoff.hpp"
#include "ppmpi/mpi/startup_barrier.hpp"

#include <sys/resource.h>
#include <unistd.h>

#include <condition_variable>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <thread>

namespace ppmpi {

void apply_product_mpi_settings() {
    const int keep_user_value = 0;
    ::setenv("OMPI_MCA_rmaps_base_oversubscribe", "1", keep_user_value);
    // No sched_yield inside MPI calls: our loops poll and sleep with their own backoff, and a
    // yield inside a turn gives the core away while that thread holds the baton (round trip
    // to a spawned worker: 64 µs with yields, 34 µs without; docs/openmpi-4.1-notes.md).
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

void check_mpi(int rc, const char* call) {
    if (rc != MPI_SUCCESS) throw MpiError(bmpi::exception(call, rc).what());
}

void return_errors(MPI_Comm comm) {
    check_mpi(MPI_Comm_set_errhandler(comm, MPI_ERRORS_RETURN), "MPI_Comm_set_errhandler");
}

MPI_Comm parent_comm() {
    MPI_Comm parent = MPI_COMM_NULL;
    check_mpi(MPI_Comm_get_parent(&parent), "MPI_Comm_get_parent");
    return parent;
}

void disconnect(MPI_Comm& comm) { check_mpi(MPI_Comm_disconnect(&comm), "MPI_Comm_disconnect"); }

MPI_Comm duplicate_asleep(MPI_Comm comm) {
    MPI_Comm copy = MPI_COMM_NULL;
    MPI_Request request = MPI_REQUEST_NULL;
    check_mpi(MPI_Comm_idup(comm, &copy, &request), "MPI_Comm_idup");
    Backoff backoff(BackoffPolicy{std::chrono::microseconds(0), std::chrono::microseconds(50),
                                  std::chrono::milliseconds(10)});
    for (int done = 0;;) {
        check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (done) break;
        std::this_thread::sleep_for(backoff.next_delay(Clock::now()));
    }
    return_errors(copy);
    return copy;
}

std::string mpi_library_version() {
    char text[MPI_MAX_LIBRARY_VERSION_STRING] = {};
    int length = 0;
    check_mpi(MPI_Get_library_version(text, &length), "MPI_Get_library_version");
    return std::string(text, static_cast<std::size_t>(length));
}

std::string mpi_thread_level() {
    int initialized = 0, finalized = 0, level = MPI_THREAD_SINGLE;
    check_mpi(MPI_Initialized(&initialized), "MPI_Initialized");
    check_mpi(MPI_Finalized(&finalized), "MPI_Finalized");
    if (!initialized || finalized) return "";
    check_mpi(MPI_Query_thread(&level), "MPI_Query_thread");
    switch (level) {
        case MPI_THREAD_MULTIPLE: return "MPI_THREAD_MULTIPLE";
        case MPI_THREAD_SERIALIZED: return "MPI_THREAD_SERIALIZED";
        case MPI_THREAD_FUNNELED: return "MPI_THREAD_FUNNELED";
        default: return "MPI_THREAD_SINGLE";
    }
}

MpiSession::MpiSession(bmpi::threading::level level) {
    if (bmpi::environment::initialized())
        throw MpiError("MPI is already initialised in this process by someone else");
    // A throwing destructor must not abort the whole job: abort_on_exception = false.
    environment_ = translate_mpi_errors(
        [&] { return std::make_unique<bmpi::environment>(level, false); });
    provided_ = bmpi::environment::thread_level();
    // Errors come back as codes (turned into exceptions), never as an abort of the whole job.
    return_errors(MPI_COMM_WORLD);
    return_errors(MPI_COMM_SELF);  // MPI_Comm_spawn reports on the communicator it spawns from
    world_rank_ = world_.rank();
    world_size_ = world_.size();
    parent_ = parent_comm();
    if (parent_ != MPI_COMM_NULL) return_errors(parent_);
}

namespace {
// What the session thread shares with the session's holders.
struct SessionThread {
    std::mutex mutex;
    std::condition_variable changed;
    std::unique_ptr<MpiSession> session;
    std::exception_ptr error;
    bool started = false, finish = false;
    std::thread thread;

    void run(bmpi::threading::level level) {
        ::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 19);  // this thread only
        std::unique_ptr<MpiSession> made;
        std::exception_ptr failed;
        try {
            StartupBarrier met;
            made = std::make_unique<MpiSession>(level);
        } catch (...) {
            failed = std::current_exception();
        }
        std::unique_lock<std::mutex> lock(mutex);
        session = std::move(made);
        error = failed;
        started = true;
        changed.notify_all();
        changed.wait(lock, [&] { return finish; });
        session.reset();  // MPI_Finalize (unless skipped), on the thread that initialized
    }
};
}  // namespace

std::shared_ptr<MpiSession> start_patient_session(bmpi::threading::level level) {
    auto shared = std::make_shared<SessionThread>();
    shared->thread = std::thread([shared, level] { shared->run(level); });
    std::unique_lock<std::mutex> lock(shared->mutex);
    shared->changed.wait(lock, [&] { return shared->started; });  // as MPI_Init itself: unbounded
    auto end = [shared] {
        {
            std::lock_guard<std::mutex> guard(shared->mutex);
            shared->finish = true;
        }
        shared->changed.notify_all();
        shared->thread.join();
    };
    if (shared->error) {
        lock.unlock();
        end();
        std::rethrow_exception(shared->error);
    }
    return std::shared_ptr<MpiSession>(shared->session.get(), [end](MpiSession*) { end(); });
}

MpiSession::~MpiSession() {
    // Boost.MPI's environment finalizes when it is destroyed; skipping finalize means never
    // destroying it (the process is about to exit anyway).
    if (!finalize_) (void)environment_.release();
}

}  // namespace ppmpi
