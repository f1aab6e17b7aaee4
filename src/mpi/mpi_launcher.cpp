#include "ppmpi/mpi/mpi_launcher.hpp"

#include <unistd.h>

#include <any>
#include <cstdlib>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/mpi/mpi_env.hpp"

namespace ppmpi {
namespace {
// srun --mpi=pmix: PMIx names the rank, Slurm the step, and no mpirun (whose ranks carry
// OMPI_COMM_WORLD_RANK) is there to start new processes. Measured under Slurm 22.05 with
// Open MPI 4.1.4: MPI_Comm_spawn then fails (tests/slurm).
bool started_by_srun() {
    return std::getenv("PMIX_RANK") && std::getenv("SLURM_STEP_ID") &&
           !std::getenv("OMPI_COMM_WORLD_RANK");
}


// MPI info objects (Boost.MPI 1.74 has none), freed on every path.
class SpawnInfo {
  public:
    SpawnInfo() { check_mpi(MPI_Info_create(&info_), "MPI_Info_create"); }
    ~SpawnInfo() { MPI_Info_free(&info_); }
    SpawnInfo(const SpawnInfo&) = delete;
    SpawnInfo& operator=(const SpawnInfo&) = delete;
    void set(const char* key, const std::string& value) {
        check_mpi(MPI_Info_set(info_, key, value.c_str()), "MPI_Info_set");
    }
    MPI_Info get() const { return info_; }

  private:
    MPI_Info info_ = MPI_INFO_NULL;
};

// Runs on a spawn attempt's own thread (MPI_THREAD_MULTIPLE), so it owns copies of its inputs.
// Raw MPI_Comm_spawn: Boost.MPI 1.74 cannot start processes.
MPI_Comm spawn_worker(const std::string& path, std::vector<std::string> args,
                      const std::string& attempt) {
    SpawnInfo info;
    // Under mpirun the slots are mpirun's: allow the extra worker processes anyway.
    info.set("map_by", "slot:OVERSUBSCRIBE");
    // Open MPI's "env" key: the child knows from it that it was spawned, and by which attempt.
    info.set("env", std::string(kSpawnAttemptVariable) + "=" + attempt);
    std::vector<char*> argv;  // MPI's C API is not const-correct; it only reads them
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    MPI_Comm intercomm = MPI_COMM_NULL;
    int errcode = MPI_SUCCESS;
    check_mpi(MPI_Comm_spawn(path.c_str(), args.empty() ? MPI_ARGV_NULL : argv.data(), 1,
                             info.get(), 0, MPI_COMM_SELF, &intercomm, &errcode),
              "MPI_Comm_spawn");
    check_mpi(errcode, "MPI_Comm_spawn (the worker failed to start)");
    return_errors(intercomm);
    return intercomm;
}

SpawnQueue::LaunchFn spawn_function(const std::string& path, const std::vector<std::string>& args) {
    return [path, args](const std::string& attempt) -> SpawnQueue::Handle {
        return spawn_worker(path, args, attempt);
    };
}

SpawnQueue::Options spawn_options(bool threaded) {
    SpawnQueue::Options options;
    options.threaded = threaded;
    return options;
}
}  // namespace

MpiLauncher::MpiLauncher(MpiTransport& mpi, Transport& transport, std::string worker_path,
                         bmpi::communicator world, int world_size,
                         std::vector<std::string> worker_args,
                         bool threaded_spawns)
    : mpi_(mpi),
      transport_(transport),
      worker_path_(std::move(worker_path)),
      worker_args_(std::move(worker_args)),
      world_(std::move(world)),
      world_size_(world_size),
      next_peer_(world_size),
      spawns_(spawn_function(worker_path_, worker_args_), spawn_options(threaded_spawns)) {
    for (int rank = 1; rank < world_size_; ++rank) mpi_.add_peer(rank, world_, rank);
}

MpiLauncher::~MpiLauncher() = default;  // the world duplicate is freed with its last copy

std::vector<PeerId> MpiLauncher::static_peers() {
    std::vector<PeerId> peers;
    for (int rank = 1; rank < world_size_; ++rank) peers.push_back(rank);
    return peers;
}

// One MPI_Comm_spawn per worker (~0.25 s each), not one for all: MPI_Comm_disconnect is
// collective over the whole spawn, so a worker retired alone (set_ncpus down) would wait in it
// for siblings that keep serving, and under mpirun that pending disconnect then blocked every
// later spawn (seen in gdb: MPI_Comm_spawn stuck in PMIx_Lookup).
std::vector<PeerId> MpiLauncher::spawn(std::size_t count) {
    if (started_by_srun())
        throw PpmpiError(
            "cannot start " + std::to_string(count) +
            " more worker(s): this job was started by srun, and MPI_Comm_spawn needs "
            "mpirun's runtime (Slurm's direct launch has none); the job has " +
            std::to_string(world_size_ - 1) +
            " worker rank(s). Ask srun for more tasks (-n), or run `mpirun --enable-recovery "
            "-np $SLURM_NTASKS python3 driver.py` inside the allocation to grow with set_ncpus");
    if (::access(worker_path_.c_str(), X_OK) != 0)
        throw PpmpiError("cannot start workers: " + worker_path_ +
                         " is not an executable file (PPMPI_WORKER names the worker program)");
    std::vector<PeerId> peers;
    for (std::size_t i = 0; i < count; ++i) {
        PeerId peer = next_peer_++;
        spawns_.request(peer);
        peers.push_back(peer);
    }
    spawns_.poll(SpawnQueue::Clock::now());  // the first one starts now
    return peers;
}

Launcher::LaunchReport MpiLauncher::collect_launches() {
    LaunchReport report;
    if (!spawns_.busy() && spawns_.abandoned_total() == 0) return report;
    for (SpawnQueue::Event& event : spawns_.poll(SpawnQueue::Clock::now())) {
        switch (event.kind) {
            case SpawnQueue::Event::Kind::Started:
                join(event.peer, std::any_cast<MPI_Comm>(event.handle));
                break;
            case SpawnQueue::Event::Kind::Surplus:
                join(next_peer_, std::any_cast<MPI_Comm>(event.handle));
                report.surplus.push_back(next_peer_++);
                break;
            case SpawnQueue::Event::Kind::Failed:
                report.failed.emplace_back(event.peer, event.error);
                break;
        }
    }
    return report;
}

void MpiLauncher::join(PeerId peer, MPI_Comm intercomm) {
    groups_.push_back(Group{intercomm, 1});
    // Attached, not owned: a spawn is disconnected (leave_group), never freed.
    mpi_.add_peer(peer, bmpi::intercommunicator(intercomm, bmpi::comm_attach), 0);
    group_of_[peer] = groups_.size() - 1;
}

void MpiLauncher::said_goodbye(PeerId peer) {
    if (in_world(peer)) return;  // still owed heartbeats and a Release (protocol step 7)
    transport_.forget(peer);
    leave_group(peer);
}

// One process of a spawn is done with (Goodbye or lost). When none is left, the
// intercommunicator is no longer probed (measured: probing one whose processes all died
// made every later job take ~6 ms over TCP), and disconnected if no process of it was lost.
void MpiLauncher::leave_group(PeerId peer) {
    auto it = group_of_.find(peer);
    if (it == group_of_.end()) return;
    Group& group = groups_[it->second];
    group_of_.erase(it);
    if (--group.waiting > 0 || group.intercomm == MPI_COMM_NULL) return;
    mpi_.drop_comm(group.intercomm);
    // Each process disconnects right after its Goodbye, so this returns promptly.
    if (!group.lost_one) disconnect(group.intercomm);
}

std::string MpiLauncher::describe(PeerId peer) const { return std::to_string(peer); }

void MpiLauncher::lost(PeerId peer) {
    spawns_.cancel(peer);  // if it was still being launched
    transport_.forget(peer);
    if (in_world(peer)) {
        world_lost_one_ = true;
        return;
    }
    auto it = group_of_.find(peer);
    if (it == group_of_.end()) return;
    groups_[it->second].lost_one = true;
    leave_group(peer);
}

bool MpiLauncher::can_end_in_order(PeerId peer) const {
    if (in_world(peer)) return !world_lost_one_;
    auto it = group_of_.find(peer);
    return it == group_of_.end() || !groups_[it->second].lost_one;
}

bool MpiLauncher::finalize_is_safe() const {
    if (world_lost_one_ || spawns_.busy() || spawns_.stuck() > 0) return false;
    for (const Group& g : groups_)
        if (g.intercomm != MPI_COMM_NULL) return false;  // never disconnected
    return true;
}

}  // namespace ppmpi
