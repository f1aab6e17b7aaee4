// Dispatcher, spawn side: starting workers for a pool, once the workers that left have ended
// (a spawn waits as a state of its pool, never inside a turn), and what background launches
// report.
#include "ppmpi/master/dispatcher.hpp"

#include <algorithm>
#include <utility>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/log.hpp"

namespace ppmpi {
namespace {
constexpr auto kSettleTimeout = std::chrono::seconds(5);
// A check reads /proc for the workers not settled: every so often, not on every turn.
constexpr auto kSettleCheckEvery = std::chrono::milliseconds(2);

// Spawned workers told to leave disconnect right after their Goodbye, and that disconnect is
// a collective the master completes when it reads the last Goodbye of their spawn. A spawn
// started before then deadlocks under mpirun (measured: the new workers' MPI_Init waited behind
// the old workers' disconnect fence, and the master in MPI_Comm_spawn for them). So pending
// departures are finished first.
//
// Then every departed process on this host must be gone: a spawn racing the runtime daemon's
// handling of a process that ends (a lost worker it has not reaped yet, or one that said
// Goodbye and is still in MPI_Finalize) hung inside Open MPI (new worker stuck in PMIx_Init,
// master in PMIx_Lookup). That includes a worker that died but is not declared lost yet
// (killed together with the one being replaced). Each departure is waited for once (settled).
bool departures_settled(const std::unordered_map<PeerId, WorkerRecord>& workers,
                        const Launcher& launcher) {
    for (const auto& [peer, worker] : workers) {
        if (worker.phase == WorkerPhase::Leaving && worker.hello && !launcher.awaits_release(peer))
            return false;  // its Goodbye is still to come
        if (worker.settled) continue;
        bool awaits = worker.goodbye && !worker.released && launcher.awaits_release(peer);
        bool ended = worker.phase == WorkerPhase::Gone
                         ? !awaits
                         : worker.hello && !process_alive(worker.process);
        if (ended && process_exists(worker.process)) return false;  // not reaped yet
    }
    return true;
}
}  // namespace

// Unclaimed world ranks first (they already run), then as many spawned workers as needed:
// at once if every departure has settled, else once they have (start_deferred_spawns).
void Dispatcher::add_workers(PoolId pool, std::size_t count) {
    auto unclaimed = [](const WorkerRecord& w) { return !w.pool && w.phase == Phase::Waiting; };
    for (PeerId peer : in_order(unclaimed)) {
        if (count == 0) return;
        WorkerRecord& worker = workers_.at(peer);
        worker.pool = pool;
        --count;
        if (worker.hello) welcome(worker);
    }
    if (count == 0) return;
    if (!spawns_blocked_.empty()) throw PpmpiError("cannot start workers: " + spawns_blocked_);
    Pool& p = pool_at(pool);
    if (p.staffing.deferred_spawns > 0 || !departures_settled(workers_, launcher_)) {
        if (p.staffing.deferred_spawns == 0) p.staffing.settle_by = Clock::now() + kSettleTimeout;
        p.staffing.deferred_spawns += count;
        log_debug("spawning " + std::to_string(count) + " worker(s) for pool " +
                  std::to_string(pool) + " once the workers that left have ended");
        return;
    }
    spawn_workers(pool, count);
}

void Dispatcher::spawn_workers(PoolId pool, std::size_t count) {
    for (auto& [peer, worker] : workers_)
        if (worker.phase == Phase::Gone) worker.settled = true;  // each waited for once
    log_debug("spawning " + std::to_string(count) + " worker(s) for pool " + std::to_string(pool));
    for (PeerId peer : launcher_.spawn(count)) {
        WorkerRecord record;
        record.peer = peer;
        record.pool = pool;
        record.label = launcher_.describe(peer);
        workers_.emplace(peer, std::move(record));
        monitor_.watch(peer, options_.start_timeout, now_);  // until its Hello
    }
}

// A spawn that waited for departures to settle (add_workers): bounded, because a worker may
// die instead of saying Goodbye. Checked from the turns; nothing here waits.
void Dispatcher::start_deferred_spawns() {
    auto due = Clock::time_point::max(), check = due;
    for (const auto& [id, pool] : pools_) {
        if (pool.staffing.deferred_spawns == 0) continue;
        due = std::min(due, pool.staffing.settle_by);
        check = std::min(check, pool.staffing.next_settle_check);
    }
    auto now = Clock::now();
    if (due == Clock::time_point::max() || now < check) return;
    if (now < due) {
        for (auto& [id, pool] : pools_) pool.staffing.next_settle_check = now + kSettleCheckEvery;
        if (!departures_settled(workers_, launcher_)) return;
    }
    for (auto& [id, pool] : pools_) {
        std::size_t count = std::exchange(pool.staffing.deferred_spawns, 0);
        if (count == 0 || pool.destroyed()) continue;
        try {
            spawn_workers(id, count);
        } catch (const std::exception& e) {
            pool.start_failed(e.what());
            shrink_to_members(id, pool,
                              std::string("workers could not be started (") + e.what() + ")");
        }
    }
}

// Background launches (launcher.hpp): a peer that will never start leaves its pool one worker
// smaller, with the reason logged and kept for the Server (which raises it while it waits for
// its workers); a surplus process is told to leave once it said Hello (on_hello).
void Dispatcher::collect_launches() {
    Launcher::LaunchReport report = launcher_.collect_launches();
    for (PeerId peer : report.surplus) {
        WorkerRecord record;
        record.peer = peer;
        record.label = launcher_.describe(peer);
        workers_.emplace(peer, std::move(record));
        monitor_.watch(peer, options_.start_timeout, now_);
    }
    for (auto& [peer, why] : report.failed) {
        auto it = workers_.find(peer);
        if (it == workers_.end() || it->second.phase == Phase::Gone) continue;
        WorkerRecord& worker = it->second;
        gone(worker);
        worker.settled = true;
        if (!worker.pool) continue;
        auto pool = pools_.find(*worker.pool);
        if (pool == pools_.end() || pool->second.destroyed()) continue;
        Pool& p = pool->second;
        p.start_failed(why);
        shrink_to_members(*worker.pool, p, "a worker could not be started (" + why + ")");
    }
}

}  // namespace ppmpi
