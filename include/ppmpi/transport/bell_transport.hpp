// ppmpi/transport/bell_transport.hpp: doorbells beside MPI, for the workers of the master's MPI
// world that run on the master's host.
//
// Ranks of one mpirun world on one host talk through Open MPI's shared memory (vader), which
// wakes nobody: an idle worker polled MPI every 2 ms (~1.5 % of a core each; 128 idle workers
// kept 1.9 of 2 cores busy). A bell lets it doze instead (doorbell.hpp) while its frames still
// go over MPI (W = the worker's side, M = the master's side):
//  1. W makes a bell page (a ShmSegment with no room for frames, shm_ring.hpp) and sends M the
//     control message "ppmpi-bell 1 <host> <nonce> <path>".
//  2. M, if <host> is its own and the page maps with that nonce, answers "ppmpi-bell attached"
//     and from then on rings W's bell after each frame it posts to W, and once more when a
//     send still unfinished after its post has completed (its data is then with W); otherwise
//     it answers "ppmpi-bell declined <why>". A small frame that is not urgent (a task for a
//     worker whose job runs) rings only a W that waits for more (doorbell.hpp, step 4).
//  3. W, attached, may doze on its bell: counted asleep first, it probes MPI once more (a frame
//     posted before M read the count is found then; one posted after finds W counted, and M
//     rings), then sleeps until rung, woken by its own threads, or its next duty. Declined, it
//     dozes as MPI lets it (mpi_transport.hpp: on sockets, for a peer on another host).
// Control messages of other layers pass through; frames are never looked into.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

#include "ppmpi/transport/shm_ring.hpp"
#include "ppmpi/transport/transport.hpp"

namespace ppmpi {

class BellTransport : public Transport {
  public:
    explicit BellTransport(std::unique_ptr<Transport> inner);

    // Step 1 (worker side). False, with the reason, if no bell page could be made here.
    bool offer(PeerId master, std::string& why);
    bool attached(PeerId peer) const;

    using Transport::post;
    void post(PeerId peer, Frame frame) override;
    void post_control(PeerId peer, Bytes bytes) override { inner_->post_control(peer, bytes); }
    std::optional<Envelope> poll() override;
    std::size_t unfinished_sends(PeerId peer) const override;
    void forget(PeerId peer) override;
    bool transferring(std::chrono::steady_clock::time_point now) const override;
    bool plan_doze(const std::vector<PeerId>& peers, Doze& plan) override;
    std::size_t live_peers() const override { return inner_->live_peers(); }

  private:
    struct Bell {
        std::shared_ptr<ShmSegment> page;
        bool mine = false;      // made here (worker side); else the peer's (master side)
        bool attached = false;  // live: the master rings it
        bool ring_when_sent = false;  // master side: a send to it was still unfinished
        bool urgent_when_sent = false;  // ... and one of them urgent (doorbell.hpp, step 4)
    };
    std::optional<Envelope> next_frame();
    bool on_control(const Envelope& envelope);  // true if it was this layer's
    void on_offer(PeerId peer, const std::vector<std::string>& words);
    void ring_completed_sends();

    std::unique_ptr<Transport> inner_;
    std::string host_;
    std::unordered_map<PeerId, Bell> bells_;
    std::vector<PeerId> unfinished_after_post_;  // master side: ring again once sent
    std::optional<Envelope> stash_;               // found by a doze's re-check
};

}  // namespace ppmpi
