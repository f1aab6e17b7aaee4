#include "ppmpi/master/link_relay.hpp"

#include <unistd.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/process.hpp"
#include "ppmpi/link/peer_host.hpp"
#include "ppmpi/master/dispatcher.hpp"

namespace ppmpi {

namespace {
constexpr int kMaxMessagesPerStep = 64;
}

LinkRelay::LinkRelay(Dispatcher& dispatcher, PoolId pool, Clock::duration limit)
    : dispatcher_(dispatcher), pool_(pool), limit_(limit), host_(this_host_name()) {}

LinkRelay::~LinkRelay() = default;

// Steps 1-2: Info, then one slot per worker.
void LinkRelay::serve(int fd, const link::SessionKeys& keys, std::string where) {
    int id = next_session_++;
    Session& session = sessions_[id];
    session.stream = std::make_unique<link::LinkStream>(fd, keys);
    session.where = std::move(where);
    session.on_this_host = link::peer_on_this_host(fd);
    std::size_t workers = dispatcher_.pool_size(pool_);
    session.stream->send_info(link::LinkInfo{static_cast<std::uint32_t>(workers),
                                             static_cast<std::int64_t>(::getpid()), host_});
    for (std::size_t i = 0; i < workers; ++i) offer_slot(session);
    session.next_beat = Clock::now() + link::kBeatInterval;
    try {
        session.stream->flush();
    } catch (const LinkError& e) {
        end(session, std::string("LinkError: ") + e.what());
    }
}

void LinkRelay::offer_slot(Session& session) {
    std::uint32_t slot = session.next_slot++;
    session.slots.insert(slot);
    send(session, slot, {Message{Hello{0, 0, host_}, {}}});
}

void LinkRelay::send(Session& session, std::uint32_t slot, std::vector<Message> messages) {
    for (Frame& frame : encode_frames(messages))
        session.stream->send_slot(slot, frame.bytes, frame.buffers, true);
}

bool LinkRelay::step(Clock::time_point now) {
    now_ = now;
    bool moved = false;
    for (auto it = sessions_.begin(); it != sessions_.end();) {
        Session& session = it->second;
        try {
            auto before = session.stream->last_received();
            receive(it->first, session);
            if (session.stream && session.stream->last_received() != before) {
                moved = true;
                if (!session.on_this_host) last_spin_cue_ = now;
            }
            if (session.stream && now >= session.next_beat) beat(session, now);
            if (session.stream && now - session.stream->last_received() > link::kSilenceLimit)
                throw LinkError("timed out: the client was silent for longer than " +
                                std::to_string(link::kSilenceLimit.count()) + " s");
            if (session.stream) session.stream->flush();
        } catch (const AuthError& e) {
            end(session, std::string("AuthError: ") + e.what());
        } catch (const LinkError& e) {
            end(session, std::string("LinkError: ") + e.what());
        } catch (const PpmpiError& e) {  // a frame that does not parse: a broken client
            end(session, std::string("ProtocolError: ") + e.what());
        }
        it = session.ended ? sessions_.erase(it) : std::next(it);
    }
    return moved;
}

void LinkRelay::receive(int id, Session& session) {
    for (int i = 0; i < kMaxMessagesPerStep && !session.ended; ++i) {
        auto message = session.stream->receive();
        if (!message) return;
        switch (message->kind) {
            case link::LinkKind::Slot: on_slot(id, session, *message); break;
            case link::LinkKind::Bye: end(session, "it said goodbye"); return;
            case link::LinkKind::Ping: break;
            case link::LinkKind::Info: throw ProtocolError("a client sent Info");
        }
    }
}

void LinkRelay::on_slot(int id, Session& session, link::LinkMessage& message) {
    if (!session.slots.count(message.slot)) return;  // a slot that was shut down: late frames
    for (Message& m : decode_frame(message.frame, std::move(message.buffers)))
        on_message(id, session, message.slot, m);
}

// Step 3, as a worker answers its master (protocol.hpp).
void LinkRelay::on_message(int id, Session& session, std::uint32_t slot, Message& message) {
    switch (kind_of(message.header)) {
        case Kind::FunctionDef:
            session.bundles[std::get<FunctionDef>(message.header).key] = std::move(message.payload);
            break;
        case Kind::Task: on_task(id, session, slot, message); break;
        case Kind::Withdraw: on_withdraw(session, slot, std::get<Withdraw>(message.header).job_id); break;
        case Kind::Shutdown: on_shutdown(session, slot, std::get<Shutdown>(message.header).immediate); break;
        case Kind::Welcome:
        case Kind::Heartbeat:
        case Kind::Release: break;
        default:
            throw ProtocolError(std::string("a client sent ") + kind_name(kind_of(message.header)));
    }
}

void LinkRelay::on_task(int id, Session& session, std::uint32_t slot, Message& message) {
    const Task& task = std::get<Task>(message.header);
    if (task.awaited) last_spin_cue_ = now_;
    auto bundle = session.bundles.find(task.func_key);
    if (bundle == session.bundles.end())
        throw ProtocolError("a task refers to a function never sent");
    JobId job = next_job_++;
    jobs_[job] = Relayed{id, slot, task.job_id};
    session.jobs[task.job_id] = job;
    dispatcher_.submit(pool_, job, task.func_key, bundle->second, std::move(message.payload),
                       limit_, std::move(message.buffers));
}

void LinkRelay::on_withdraw(Session& session, std::uint32_t slot, JobId client_job) {
    auto it = session.jobs.find(client_job);
    if (it == session.jobs.end()) return;
    JobId job = it->second;
    Relayed relayed = jobs_.at(job);
    jobs_.erase(job);  // a cancel ends it here: nothing to tell the client but Withdrawn
    if (!dispatcher_.cancel(pool_, job, false)) {
        jobs_[job] = relayed;  // started: its result comes as usual
        return;
    }
    session.jobs.erase(it);
    Result result;
    result.job_id = client_job;
    result.status = ResultStatus::Withdrawn;
    send(session, slot, {Message{result, {}}});
}

void LinkRelay::on_shutdown(Session& session, std::uint32_t slot, bool immediate) {
    cancel_jobs(session, slot);
    session.slots.erase(slot);
    if (immediate) {  // the client stopped this slot (a job of it timed out or was cancelled)
        offer_slot(session);
    } else {
        send(session, slot, {Message{Goodbye{}, {}}});
    }
}

// Cancels the session's jobs (of one slot, or all); returns how many.
std::size_t LinkRelay::cancel_jobs(Session& session, std::optional<std::uint32_t> slot) {
    std::vector<JobId> doomed;
    for (auto it = session.jobs.begin(); it != session.jobs.end();) {
        auto relayed = jobs_.find(it->second);
        if (slot && relayed != jobs_.end() && relayed->second.slot != *slot) {
            ++it;
            continue;
        }
        doomed.push_back(it->second);
        if (relayed != jobs_.end()) jobs_.erase(relayed);
        it = session.jobs.erase(it);
    }
    for (JobId job : doomed) dispatcher_.cancel(pool_, job, true);
    return doomed.size();
}

// Step 4: what the pool made of a client's job goes back to the slot that sent it.
void LinkRelay::on_end(JobId job, JobOutcome& outcome) {
    auto it = jobs_.find(job);
    if (it == jobs_.end()) return;  // cancelled for its client, or its client left
    Relayed relayed = it->second;
    jobs_.erase(it);
    auto session = sessions_.find(relayed.session);
    if (session == sessions_.end() || session->second.ended) return;
    session->second.jobs.erase(relayed.client_job);
    Result result;
    result.job_id = relayed.client_job;
    result.seconds = outcome.seconds;
    Message message{result, std::move(outcome.payload), std::move(outcome.buffers)};
    auto& status = std::get<Result>(message.header).status;
    switch (outcome.outcome) {
        case Outcome::Ok: status = ResultStatus::Ok; break;
        case Outcome::RemoteError: status = ResultStatus::Error; break;
        case Outcome::WorkerLost:
            status = ResultStatus::Lost;
            message.payload = outcome.message;
            break;
        case Outcome::Timeout:
        case Outcome::NoWorkers:
            status = ResultStatus::Failed;
            std::get<Result>(message.header).outcome = static_cast<std::uint8_t>(outcome.outcome);
            message.payload = outcome.message;
            break;
        default: return;  // cancelled or destroyed here: the link ends (the client re-runs it)
    }
    send(session->second, relayed.slot, {std::move(message)});
}

void LinkRelay::beat(Session& session, Clock::time_point now) {
    session.next_beat = now + link::kBeatInterval;
    static const Bytes heartbeat = encode_frame({Message{Heartbeat{}, {}}});
    for (std::uint32_t slot : session.slots) session.stream->send_slot(slot, heartbeat, {}, true);
    if (session.slots.empty()) session.stream->send_ping();
}

void LinkRelay::end(Session& session, const std::string& reason) {
    if (session.ended) return;
    session.ended = true;
    std::size_t cancelled = cancel_jobs(session, std::nullopt);
    events_.push_back("client " + session.where + " left (" + reason + "); " +
                      std::to_string(cancelled) + " of its jobs cancelled");
    session.stream.reset();
}

bool LinkRelay::plan(std::vector<int>& fds) const {
    for (const auto& [id, session] : sessions_)
        if (session.stream && !session.stream->add_fd(fds)) return false;
    return true;
}

bool LinkRelay::transferring() const {
    for (const auto& [id, session] : sessions_)
        if (session.stream && session.stream->busy()) return true;
    return false;
}

}  // namespace ppmpi
