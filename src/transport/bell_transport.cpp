#include "ppmpi/transport/bell_transport.hpp"

#include <algorithm>
#include <sstream>

#include "ppmpi/core/log.hpp"
#include "ppmpi/core/process.hpp"

namespace ppmpi {
namespace {
constexpr const char* kOffer = "ppmpi-bell";
constexpr const char* kVersion = "1";
constexpr const char* kAttached = "ppmpi-bell attached";
constexpr const char* kDeclined = "ppmpi-bell declined";
constexpr std::size_t kPageRingBytes = 64;  // no frames go through a bell page
// Open MPI's shared-memory eager limit (btl_vader_eager_limit): larger frames need both sides'
// calls to move.
constexpr std::size_t kLazyFrameBytes = 4096;

Doorbell& worker_bell(ShmSegment& page) { return page.to_worker().control().bell; }
}  // namespace

BellTransport::BellTransport(std::unique_ptr<Transport> inner)
    : inner_(std::move(inner)), host_(this_host_name()) {}

bool BellTransport::offer(PeerId master, std::string& why) {
    if (!doze_supported()) {
        why = "this kernel cannot wait on several futexes at once (futex_waitv)";
        return false;
    }
    std::uint64_t nonce = fresh_nonce();
    auto page = ShmSegment::create(kPageRingBytes, nonce, why);
    if (!page) return false;
    std::ostringstream text;
    text << kOffer << ' ' << kVersion << ' ' << host_ << ' ' << nonce << ' '
         << page->path_for_peer();
    bells_[master] = Bell{std::move(page), true, false, false};
    inner_->post_control(master, text.str());
    return true;
}

bool BellTransport::attached(PeerId peer) const {
    auto it = bells_.find(peer);
    return it != bells_.end() && it->second.attached;
}

// Step 2, after each post (master side).
// A frame that is not urgent wakes W only if W waits for more than urgent ones (doorbell.hpp,
// step 4), unless it is large: MPI moves a large one only while W's side calls MPI too.
void BellTransport::post(PeerId peer, Frame frame) {
    bool urgent = frame.urgent || ShmRing::stream_size(frame) > kLazyFrameBytes;
    inner_->post(peer, std::move(frame));
    auto it = bells_.find(peer);
    if (it == bells_.end() || it->second.mine || !it->second.attached) return;
    Bell& bell = it->second;
    ring(worker_bell(*bell.page), urgent);
    if (inner_->unfinished_sends(peer) == 0) return;
    bell.urgent_when_sent |= urgent;
    if (!bell.ring_when_sent) {
        bell.ring_when_sent = true;
        unfinished_after_post_.push_back(peer);
    }
}

void BellTransport::ring_completed_sends() {
    auto sent = [&](PeerId peer) {
        auto it = bells_.find(peer);
        if (it == bells_.end()) return true;
        if (inner_->unfinished_sends(peer) > 0) return false;
        it->second.ring_when_sent = false;
        ring(worker_bell(*it->second.page), it->second.urgent_when_sent);
        it->second.urgent_when_sent = false;
        return true;
    };
    unfinished_after_post_.erase(
        std::remove_if(unfinished_after_post_.begin(), unfinished_after_post_.end(), sent),
        unfinished_after_post_.end());
}

std::optional<Envelope> BellTransport::next_frame() {
    while (auto envelope = inner_->poll()) {
        if (envelope->control && on_control(*envelope)) continue;
        return envelope;
    }
    return std::nullopt;
}

std::optional<Envelope> BellTransport::poll() {
    if (!unfinished_after_post_.empty()) ring_completed_sends();
    if (stash_) {
        std::optional<Envelope> envelope;
        envelope.swap(stash_);
        return envelope;
    }
    return next_frame();
}

bool BellTransport::on_control(const Envelope& envelope) {
    std::vector<std::string> words = control_words(envelope.frame);
    if (words.empty() || words[0] != kOffer) return false;
    auto it = bells_.find(envelope.peer);
    bool offered_here = it != bells_.end() && it->second.mine && !it->second.attached;
    if (words.size() == 5) {
        on_offer(envelope.peer, words);
    } else if (offered_here && envelope.frame == kAttached) {  // step 3
        it->second.attached = true;
        it->second.page->close_descriptor();
    } else if (offered_here && envelope.frame.rfind(kDeclined, 0) == 0) {
        log_debug("doorbell declined by peer " + std::to_string(envelope.peer) + ":" +
                  envelope.frame.substr(std::string(kDeclined).size()));
        bells_.erase(it);
    }
    return true;
}

// Step 2 (master side).
void BellTransport::on_offer(PeerId peer, const std::vector<std::string>& words) {
    std::string why;
    std::unique_ptr<ShmSegment> page;
    if (words[1] != kVersion) {
        why = "version " + words[1] + " (this side speaks " + kVersion + ")";
    } else if (words[2] != host_) {
        why = "another host (" + words[2] + ")";
    } else {
        std::uint64_t nonce = std::strtoull(words[3].c_str(), nullptr, 10);
        page = ShmSegment::attach(words[4], kPageRingBytes, nonce, why);
    }
    if (!page) {
        log_debug("peer " + std::to_string(peer) + ": no doorbell (" + why + ")");
        inner_->post_control(peer, std::string(kDeclined) + " " + why);
        return;
    }
    bells_[peer] = Bell{std::move(page), false, true, false};
    inner_->post_control(peer, kAttached);
}

std::size_t BellTransport::unfinished_sends(PeerId peer) const {
    return inner_->unfinished_sends(peer);
}

void BellTransport::forget(PeerId peer) {
    bells_.erase(peer);
    inner_->forget(peer);
}

bool BellTransport::transferring(std::chrono::steady_clock::time_point now) const {
    return inner_->transferring(now);
}

// Step 3 (worker side); elsewhere, as the inner transport allows, except while an offer waits
// for its answer (MPI's shared memory rings no bell and fills no socket).
bool BellTransport::plan_doze(const std::vector<PeerId>& peers, Doze& plan) {
    if (peers.size() == 1 && attached(peers[0]) && bells_.at(peers[0]).mine) {
        if (stash_ || inner_->unfinished_sends(peers[0]) > 0) return false;
        Bell& bell = bells_.at(peers[0]);
        plan.bells.push_back(&worker_bell(*bell.page));
        plan.keep.push_back(bell.page);
        auto earlier = std::move(plan.arrived);
        plan.arrived = [this, earlier = std::move(earlier)] {
            if (earlier && earlier()) return true;
            if (!stash_) stash_ = next_frame();
            return stash_.has_value();
        };
        return true;
    }
    for (PeerId peer : peers) {
        auto it = bells_.find(peer);
        if (it != bells_.end() && (it->second.mine || it->second.attached)) return false;
    }
    return inner_->plan_doze(peers, plan);
}

}  // namespace ppmpi
