#include "ppmpi/mpi_transport.hpp"

#include <algorithm>
#include <climits>

#include "ppmpi/errors.hpp"
#include "ppmpi/mpi_env.hpp"

namespace ppmpi {

MpiTransport::~MpiTransport() {
    // Unfinished requests are not waited for (a dead peer would never finish them); their
    // buffers must outlive MPI's use of them, so they are deliberately leaked.
    // (Moving a std::list keeps its nodes, so the buffers stay where MPI saw them.)
    for (auto* list : {&sends_, &abandoned_})
        if (!list->empty()) new std::list<Send>(std::move(*list));
}

void MpiTransport::add_peer(PeerId id, MPI_Comm comm, int rank) {
    links_[id] = Link{comm, rank, false};
    by_address_[{comm, rank}] = id;
    if (std::find(comms_.begin(), comms_.end(), comm) == comms_.end()) comms_.push_back(comm);
}

void MpiTransport::drop_comm(MPI_Comm comm) {
    for (auto& [id, link] : links_)
        if (link.comm == comm) forget(id);
    comms_.erase(std::remove(comms_.begin(), comms_.end(), comm), comms_.end());
    next_comm_ = 0;
}

void MpiTransport::post(PeerId peer, Bytes frame) {
    auto it = links_.find(peer);
    PPMPI_ENFORCE(it != links_.end(), "post to unknown peer ", peer);
    if (it->second.forgotten) return;
    if (frame.size() > static_cast<std::size_t>(INT_MAX))
        throw PpmpiError("a message of " + std::to_string(frame.size()) +
                         " bytes exceeds MPI's 2 GiB limit for one message");
    sends_.push_back(Send{peer, MPI_REQUEST_NULL, std::move(frame)});
    Send& send = sends_.back();
    check_mpi(MPI_Isend(send.buffer.data(), static_cast<int>(send.buffer.size()), MPI_BYTE,
                        it->second.rank, kTag, it->second.comm, &send.request),
              "MPI_Isend");
}

void MpiTransport::complete_sends() {
    for (auto it = sends_.begin(); it != sends_.end();) {
        int done = 0;
        check_mpi(MPI_Test(&it->request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        it = done ? sends_.erase(it) : std::next(it);
    }
}

std::optional<Envelope> MpiTransport::receive_from(MPI_Comm comm) {
    int found = 0;
    MPI_Message message;
    MPI_Status status;
    check_mpi(MPI_Improbe(MPI_ANY_SOURCE, kTag, comm, &found, &message, &status), "MPI_Improbe");
    if (!found) return std::nullopt;
    int count = 0;
    check_mpi(MPI_Get_count(&status, MPI_BYTE, &count), "MPI_Get_count");
    Envelope envelope;
    envelope.frame.resize(static_cast<std::size_t>(count));
    check_mpi(MPI_Mrecv(envelope.frame.data(), count, MPI_BYTE, &message, MPI_STATUS_IGNORE),
              "MPI_Mrecv");
    auto peer = by_address_.find({comm, status.MPI_SOURCE});
    if (peer == by_address_.end() || links_.at(peer->second).forgotten) {
        envelope.peer = -1;  // from a rank we do not (or no longer) talk to
    } else {
        envelope.peer = peer->second;
    }
    return envelope;
}

std::optional<Envelope> MpiTransport::poll() {
    complete_sends();
    // Two rounds: MPI_Improbe matches before it progresses, so a message that its own progress
    // step just read in (measured: over TCP it then waited a whole backoff sleep) is only
    // matched by the next probe.
    for (int round = 0; round < 2; ++round) {
        for (std::size_t i = 0; i < comms_.size(); ++i) {
            MPI_Comm comm = comms_[(next_comm_ + i) % comms_.size()];
            while (auto envelope = receive_from(comm)) {
                if (envelope->peer < 0) continue;
                next_comm_ = (next_comm_ + i + 1) % comms_.size();
                return envelope;
            }
        }
    }
    return std::nullopt;
}

std::size_t MpiTransport::unfinished_sends(PeerId peer) const {
    return static_cast<std::size_t>(std::count_if(
        sends_.begin(), sends_.end(), [&](const Send& s) { return s.peer == peer; }));
}

void MpiTransport::forget(PeerId peer) {
    auto it = links_.find(peer);
    if (it == links_.end()) return;
    it->second.forgotten = true;
    for (auto send = sends_.begin(); send != sends_.end();) {
        if (send->peer == peer) {
            abandoned_.splice(abandoned_.end(), sends_, send++);
        } else {
            ++send;
        }
    }
}

}  // namespace ppmpi
