// Dispatcher, parallel jobs (nranks = k): the steps of gangs.hpp on a pool's workers.
#include "message_text.hpp"
#include "ppmpi/core/log.hpp"
#include "ppmpi/master/dispatcher.hpp"

#include <algorithm>

namespace ppmpi {

// Steps 1-2, before the pool's single jobs are handed out (reserved workers get none).
void Dispatcher::dispatch_gangs(PoolId id, Pool& pool) {
    if (pool.gangs().pending() == 0 && pool.gangs().active() == 0) return;
    auto load = [&](PeerId worker) { return pool.scheduler().load(worker); };
    for (PeerId worker : pool.gangs().reserve(load)) pool.scheduler().hold(worker, true);
    while (auto start = pool.gangs().start_ready(load)) {
        const QueuedJob& queued = pool.job(start->job);
        for (PeerId worker : start->members) {
            queue_message(worker, Message{Gang{start->job, start->domain_ranks}, {}});
            send_task(pool, worker, start->job, queued);
        }
        pool.mark_sent(start->job, ++send_order_);
        pool.start(start->job, now_);
        for (PeerId worker : pool.gangs().reserve(load)) pool.scheduler().hold(worker, true);
    }
    if (auto unplaceable = pool.gangs().unplaceable())
        regroup_for(id, pool, unplaceable->first, unplaceable->second);
}

// The oldest parallel job needs more workers than any domain has (losses and replacements
// split them up). Once none of the pool's workers is starting (they may make one big enough),
// `nranks` of them leave, idle ones of the smallest domains first, and as many are spawned
// together: a domain of that size. Where nothing can be spawned, or it was tried for this job
// already, the job fails naming the sizes: it would wait for ever.
void Dispatcher::regroup_for(PoolId id, Pool& pool, JobId job, std::size_t nranks) {
    if (pool.staffing.deferred_spawns > 0) return;  // starting too (add_workers)
    for (const auto& [peer, worker] : workers_)
        if (worker.pool == id && !worker.hello && worker.phase != Phase::Gone) return;
    std::string why = spawns_blocked_;
    if (why.empty() && nranks <= members(id) && pool.mark_regrouped(job)) {
        auto load = [&](PeerId worker) { return pool.scheduler().load(worker); };
        for (PeerId peer : pool.gangs().to_regroup(nranks, load)) {
            WorkerRecord& worker = workers_.at(peer);
            leave_gang(pool, worker);
            pool.scheduler().retire_worker(peer);  // a busy one finishes its jobs first
            if (pool.scheduler().load(peer) == 0)
                say_shutdown(worker);
            else
                worker.phase = Phase::Retiring;
        }
        log_debug("spawning " + std::to_string(nranks) + " workers together for parallel job " +
                  std::to_string(job));
        try {
            return add_workers(id, nranks);
        } catch (const std::exception& e) {  // the job fails below, saying why
            why = e.what();
            pool.start_failed(why);
        }
    }
    std::string message = "a parallel job of " + std::to_string(nranks) + " ranks needs " +
                          std::to_string(nranks) +
                          " workers that share an MPI world; this server's workers share "
                          "worlds of " +
                          pool.gangs().describe_domains() + (why.empty() ? "" : " (" + why + ")");
    end_gang(pool, job, Outcome::NoWorkers);  // it waits: it leaves the gangs' queue
    end_job(pool, job, JobOutcome{Outcome::NoWorkers, {}, message, {}, 0.0});
}

// Step 3: one member's answer; the job ends once all are in. After an error the others get
// kAbortGrace (the deadline moves up; check_deadlines ends the job then).
void Dispatcher::on_gang_result(WorkerRecord& worker,
                                Pool& pool,
                                const Result& result,
                                Message& message) {
    JobId job = result.job_id;
    pool.record_result(worker.peer, worker.label, result.seconds, now_);
    GangPart part{result.status, std::move(message.payload), std::move(message.buffers),
                  result.seconds};
    bool failed = result.status != ResultStatus::Ok;
    if (pool.gangs().record(job, worker.peer, std::move(part)))
        return end_gang(pool, job, Outcome::Ok);
    if (failed) pool.shorten_deadline(job, now_ + kAbortGrace);
}

// Ok: the job's outcome from what its members answered (Ok if all were; members that did not
// answer, waiting in a collective for one that failed, are stopped, and so are the others:
// replacements spawned together form a domain of the gang's size again). Timeout, Cancelled:
// all are stopped (a cancelled job's outcome is the caller's). A waiting job just leaves.
void Dispatcher::end_gang(Pool& pool, JobId job, Outcome why) {
    if (!pool.gangs().running(job)) {
        for (PeerId worker : pool.gangs().drop(job)) pool.scheduler().hold(worker, false);
        return;
    }
    auto [members, parts] = pool.gangs().end(job);
    std::vector<std::string> names;
    for (PeerId member : members) names.push_back(workers_.at(member).label);
    bool complete = std::all_of(parts.begin(), parts.end(), [](const auto& p) { return p; });
    JobOutcome outcome{why, {}, {}, names.at(0), 0.0};
    if (why == Outcome::Ok) {
        for (const auto& part : parts) {
            if (part && part->status != ResultStatus::Ok) outcome.outcome = Outcome::RemoteError;
            if (part) outcome.seconds = std::max(outcome.seconds, part->seconds);
        }
        if (!complete) outcome.outcome = Outcome::RemoteError;
        outcome.payload = pack_gang_parts(parts, outcome.buffers);
    } else if (why == Outcome::Timeout) {
        outcome.message = "ran longer than its timeout of " + seconds_text(pool.job(job).timeout) +
                          " on workers " + join(names) + "; they were stopped and replaced";
    }
    if (why != Outcome::Cancelled) end_job(pool, job, std::move(outcome));
    for (PeerId member : members) {
        pool.scheduler().hold(member, false);
        if (why == Outcome::Ok && complete) continue;
        stop_worker(workers_.at(member), why == Outcome::Ok ? "a rank of its parallel job failed"
                                         : why == Outcome::Timeout ? "its job timed out"
                                                                   : "its job was cancelled");
    }
}

// A gang member left the pool (lost, or told to leave): a reservation it was in is released;
// a job it ran loses its other members and runs again (the loss charged to it).
void Dispatcher::leave_gang(Pool& pool, const WorkerRecord& worker) {
    auto removal = pool.gangs().remove_worker(worker.peer);
    for (PeerId other : removal.unhold) pool.scheduler().hold(other, false);
    if (!removal.broken || pool.destroyed()) return;
    JobId job = *removal.broken;
    auto members = pool.gangs().end(job).first;
    for (PeerId member : members)
        if (member != worker.peer)
            stop_worker(workers_.at(member), "a rank of its parallel job was lost");
    if (pool.requeue_gang(job, worker.label)) return;
    std::string message =
        "a rank of it was running on " + join(pool.job(job).lost_on) +
        " when each of them was lost (max_retries=" + std::to_string(pool.spec().max_retries) + ")";
    end_job(pool, job, JobOutcome{Outcome::WorkerLost, {}, message, worker.label, 0.0});
}

} // namespace ppmpi
