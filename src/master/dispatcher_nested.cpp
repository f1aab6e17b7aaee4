// Dispatcher, nested jobs: protocol step 8 on the master (children.hpp).
#include "ppmpi/core/log.hpp"
#include "ppmpi/master/dispatcher.hpp"

namespace ppmpi {

// A worker's function bundle (kept while any job needs it, as the driver's), its jobs' children
// (queued ahead of top-level jobs), and a parent that waits for one of them.
void Dispatcher::handle_nested(WorkerRecord& worker, Message& message) {
    if (!worker.pool || pool_at(*worker.pool).destroyed()) return;
    Pool& pool = pool_at(*worker.pool);
    if (auto* def = std::get_if<FunctionDef>(&message.header)) {
        if (!message.payload.empty())
            pool.functions().acquire(def->key, std::move(message.payload));
        known_.learn(worker.peer, def->key);
    } else if (auto* submit = std::get_if<Submit>(&message.header)) {
        if (pool.queued().count(submit->job_id) || !pool.functions().contains(submit->func_key)) {
            log_warning("worker " + worker.label +
                        " submitted a job twice, or with a function "
                        "it never sent; dropped");
            return;
        }
        QueuedJob queued;
        queued.key = submit->func_key;
        queued.args = std::move(message.payload);
        queued.arg_buffers = std::move(message.buffers);
        queued.timeout = std::chrono::milliseconds(submit->timeout_ms);
        pool.submit_child(submit->job_id, std::move(queued), worker.peer, submit->parent);
    } else if (auto* waiting = std::get_if<Waiting>(&message.header)) {
        help_with(pool, waiting->job_id, worker.peer);
    }
}

// The child goes to `helper`, whose job waits for it, unless it runs (or ran) elsewhere: from
// the queue at once, or once it came back from behind another worker's job (protocol step 4).
void Dispatcher::help_with(Pool& pool, JobId child, PeerId helper) {
    auto queued = pool.queued().find(child);
    if (log_enabled(LogLevel::Debug)) {
        auto on = pool.scheduler().worker_of(child);
        log_debug("child " + std::to_string(child & 0xffffffff) + " waited for by worker " +
                  std::to_string(helper) + ": " +
                  (queued == pool.queued().end() ? std::string("over")
                   : on                          ? "on worker " + std::to_string(*on) +
                              (queued->second.started ? " (started)" : " (queued there)")
                        : std::string("in the queue")));
    }
    if (queued == pool.queued().end()) return;  // over: its result is on its way
    if (pool.scheduler().take_for(child, helper)) {
        send_task(pool, helper, child, queued->second);
        pool.mark_sent(child, ++send_order_);
        return;
    }
    auto worker = pool.scheduler().worker_of(child);
    if (!worker || *worker == helper || queued->second.started || queued->second.withdrawing)
        return;
    pool.ask_back(child);
    pool.children().want_help(child, helper);
    queue_message(*worker, Message{Withdraw{child}, {}});
}

// A child's outcome goes to the worker that submitted it (not to Python here), unless that
// worker was lost or ran the child itself (it has the result). True if `job` was a child.
bool Dispatcher::end_child(Pool& pool, JobId job, JobOutcome& outcome,
                           std::optional<PeerId> ran_on) {
    const Children::Child* child = pool.children().find(job);
    if (!child) return false;
    PeerId owner = child->owner;
    bool deliver = !child->orphaned && ran_on != owner;
    pool.children().erase(job);
    auto it = workers_.find(owner);
    if (!deliver || it == workers_.end() || it->second.phase == Phase::Gone) return true;
    Result result;
    result.job_id = job;
    result.seconds = outcome.seconds;
    Message message{result, std::move(outcome.payload), std::move(outcome.buffers)};
    auto& status = std::get<Result>(message.header).status;
    if (outcome.outcome == Outcome::Ok || outcome.outcome == Outcome::RemoteError) {
        status = outcome.outcome == Outcome::Ok ? ResultStatus::Ok : ResultStatus::Error;
    } else {
        status = ResultStatus::Failed;
        std::get<Result>(message.header).outcome = static_cast<std::uint8_t>(outcome.outcome);
        message.payload = outcome.message;
    }
    queue_message(owner, std::move(message));
    return true;
}

// The worker was lost, or its job cancelled or timed out: the children its jobs submitted lose
// their parent. Those not sent anywhere are dropped; those running finish, their results going
// nowhere, unless `stop_running` (cancelled: their workers are stopped, and so are their own
// children's, all the way down).
void Dispatcher::orphan_children(Pool& pool, PeerId owner, bool stop_running) {
    auto drop_if_queued = [&](JobId child) {
        if (pool.queued().count(child) && !pool.scheduler().worker_of(child))
            end_job(pool, child, JobOutcome{Outcome::Cancelled, {}, "its parent ended", {}, 0.0});
    };
    for (JobId child : pool.children().orphan(owner)) {
        auto on = pool.scheduler().worker_of(child);
        if (on && stop_running && *on != owner && workers_.count(*on)) {
            orphan_children(pool, *on, true);
            stop_worker(workers_.at(*on), "the job that submitted its job was cancelled");
        }
        drop_if_queued(child);  // never sent, or sent back by the stop
    }
}

} // namespace ppmpi
