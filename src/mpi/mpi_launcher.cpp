#include "ppmpi/mpi/mpi_launcher.hpp"

#include <unistd.h>

#include <algorithm>
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
MPI_Comm spawn_workers(const std::string& path, std::vector<std::string> args,
                       const std::string& attempt, std::size_t count) {
    SpawnInfo info;
    // Under mpirun the slots are mpirun's: allow the extra worker processes anyway.
    info.set("map_by", "slot:OVERSUBSCRIBE");
    // Open MPI's "env" key: the child knows from it that it was spawned, and by which attempt.
    info.set("env", std::string(kSpawnAttemptVariable) + "=" + attempt);
    std::vector<char*> argv;  // MPI's C API is not const-correct; it only reads them
    for (std::string& arg : args) argv.push_back(arg.data());
    argv.push_back(nullptr);
    MPI_Comm intercomm = MPI_COMM_NULL;
    std::vector<int> errcodes(count, MPI_SUCCESS);
    check_mpi(MPI_Comm_spawn(path.c_str(), args.empty() ? MPI_ARGV_NULL : argv.data(),
                             static_cast<int>(count), info.get(), 0, MPI_COMM_SELF, &intercomm,
                             errcodes.data()),
              "MPI_Comm_spawn");
    for (int code : errcodes) check_mpi(code, "MPI_Comm_spawn (a worker failed to start)");
    return_errors(intercomm);
    return intercomm;
}

SpawnQueue::LaunchFn spawn_function(const std::string& path, const std::vector<std::string>& args) {
    return [path, args](const std::string& attempt, std::size_t count) -> SpawnQueue::Handle {
        return spawn_workers(path, args, attempt, count);
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

// The workers asked for at once start in batches of up to kMaxBatch, each one MPI_Comm_spawn:
// they start in parallel (one spawn per worker, one after another, took 10.9 s for 32 on
// 2 cores, each waiting for the one before). Their processes are not disconnected (a disconnect
// is collective over the whole spawn: a worker retired alone would wait in it for siblings
// that keep serving, and under mpirun that pending disconnect blocked every later spawn), and
// finalize together (said_goodbye).
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
    for (std::size_t first = 0; first < count; first += kMaxBatch) {
        std::vector<PeerId> batch;
        for (std::size_t i = first; i < std::min(count, first + kMaxBatch); ++i)
            batch.push_back(next_peer_++);
        peers.insert(peers.end(), batch.begin(), batch.end());
        spawns_.request(std::move(batch));
    }
    spawns_.poll(SpawnQueue::Clock::now());  // the first one starts now
    return peers;
}

// Processes nobody waits for any more (started after their launch was given up, or for peers
// cancelled meanwhile) get peer ids of their own: the dispatcher lets them go after Hello.
Launcher::LaunchReport MpiLauncher::collect_launches() {
    LaunchReport report;
    if (!spawns_.busy() && spawns_.abandoned_total() == 0) return report;
    for (SpawnQueue::Event& event : spawns_.poll(SpawnQueue::Clock::now())) {
        if (event.kind == SpawnQueue::Event::Kind::Failed) {
            for (PeerId peer : event.peers) report.failed.emplace_back(peer, event.error);
            continue;
        }
        std::vector<PeerId> ids = event.peers;
        ids.resize(event.processes, -1);
        for (PeerId& id : ids) {
            bool unwanted = std::find(event.unwanted.begin(), event.unwanted.end(), id) !=
                            event.unwanted.end();
            if (id >= 0 && !unwanted) continue;
            id = next_peer_++;
            report.surplus.push_back(id);
        }
        join(std::move(ids), std::any_cast<MPI_Comm>(event.handle));
    }
    return report;
}

void MpiLauncher::join(std::vector<PeerId> peers, MPI_Comm intercomm) {
    // Attached, not owned: a spawn is disconnected (leave_group), never freed.
    bmpi::intercommunicator comm(intercomm, bmpi::comm_attach);
    for (std::size_t rank = 0; rank < peers.size(); ++rank) {
        mpi_.add_peer(peers[rank], comm, static_cast<int>(rank));
        group_of_[peers[rank]] = groups_.size();
    }
    std::size_t size = peers.size();
    groups_.push_back(Group{intercomm, std::move(peers), size, false, false});
}

const MpiLauncher::Group* MpiLauncher::group(PeerId peer) const {
    auto it = group_of_.find(peer);
    return it == group_of_.end() ? nullptr : &groups_[it->second];
}

bool MpiLauncher::awaits_release(PeerId peer) const {
    const Group* g = group(peer);
    return in_world(peer) || (g && g->members.size() > 1);
}

// The members of a spawn of several that wait for Release (all of them said Goodbye or were
// lost), now let go; the spawn is no longer probed.
std::vector<Launcher::Release> MpiLauncher::waiting_members(Group& group, bool finalize) {
    std::vector<Release> out;
    for (PeerId member : group.members) out.push_back(Release{member, finalize});
    return out;
}

std::vector<Launcher::Release> MpiLauncher::said_goodbye(PeerId peer) {
    if (in_world(peer)) return {};  // still owed heartbeats and a Release (protocol step 7)
    auto it = group_of_.find(peer);
    if (it == group_of_.end()) return {};
    Group& g = groups_[it->second];
    if (g.members.size() == 1) {
        transport_.forget(peer);
        leave_group(peer);
        return {};
    }
    if (g.lost_one) return {Release{peer, false}};  // nothing to finalize with
    if (--g.waiting > 0) return {};
    g.released = true;
    return waiting_members(g, true);
}

// One process of a spawn of one is done with (Goodbye or lost). The intercommunicator is then
// no longer probed (measured: probing one whose processes all died made every later job take
// ~6 ms over TCP), and disconnected if its process was not lost.
void MpiLauncher::leave_group(PeerId peer) {
    auto it = group_of_.find(peer);
    if (it == group_of_.end()) return;
    Group& group = groups_[it->second];
    group_of_.erase(it);
    if (group.intercomm == MPI_COMM_NULL) return;
    mpi_.drop_comm(group.intercomm);
    // Each process disconnects right after its Goodbye, so this returns promptly.
    if (!group.lost_one) disconnect(group.intercomm);
}

std::string MpiLauncher::describe(PeerId peer) const { return std::to_string(peer); }

// A world rank's rank is its peer id; a spawned worker's, its place in its spawn.
Launcher::Domain MpiLauncher::domain(PeerId peer) const {
    if (in_world(peer)) return Domain{0, static_cast<int>(peer)};
    auto it = group_of_.find(peer);
    if (it == group_of_.end()) return {};
    const auto& members = groups_[it->second].members;
    auto at = std::find(members.begin(), members.end(), peer);
    return Domain{static_cast<int>(it->second) + 1, static_cast<int>(at - members.begin())};
}

std::vector<Launcher::Release> MpiLauncher::lost(PeerId peer) {
    spawns_.cancel(peer);  // if it was still being launched
    transport_.forget(peer);
    if (in_world(peer)) {
        world_lost_one_ = true;
        return {};
    }
    auto it = group_of_.find(peer);
    if (it == group_of_.end()) return {};
    Group& g = groups_[it->second];
    g.lost_one = true;
    if (g.members.size() == 1) {
        leave_group(peer);
        return {};
    }
    --g.waiting;
    if (g.released) return {};
    g.released = true;  // from now on each leaves as it says Goodbye, without finalizing
    return waiting_members(g, false);  // those that said Goodbye already (the dispatcher checks)
}

bool MpiLauncher::can_end_in_order(PeerId peer) const {
    if (in_world(peer)) return !world_lost_one_;
    const Group* g = group(peer);
    return !g || !g->lost_one;
}

bool MpiLauncher::may_finalize(PeerId peer) const {
    if (in_world(peer)) return !world_lost_one_;
    const Group* g = group(peer);
    return !g || (!g->lost_one && g->waiting == 0);
}

// MPI_Finalize does not wait for the processes of a spawn of several, which finalize among
// themselves and are not disconnected (Open MPI 4.1, measured), but it is not risked with a
// spawn in flight or stuck, a spawned process lost, or a world rank lost.
bool MpiLauncher::finalize_is_safe() const {
    if (world_lost_one_ || spawns_.busy() || spawns_.stuck() > 0) return false;
    return std::none_of(groups_.begin(), groups_.end(), [](const Group& g) { return g.lost_one; });
}

}  // namespace ppmpi
