// ppmpi/master/linked_launcher.hpp: the dispatcher's Launcher, knowing remote servers' slots.
//
// A slot (link_transport.hpp) is a worker nobody here launched: it leaves by Goodbye alone,
// shares no MPI collective with anyone, and is named by its link and slot. Every other peer is
// the real launcher's.
#pragma once

#include <string>
#include <vector>

#include "ppmpi/link/link_transport.hpp"
#include "ppmpi/master/launcher.hpp"

namespace ppmpi {

class LinkedLauncher : public Launcher {
  public:
    explicit LinkedLauncher(Launcher& base) : base_(base) {}

    static bool linked(PeerId peer) { return link::LinkTransport::is_link_peer(peer); }

    std::vector<PeerId> static_peers() override { return base_.static_peers(); }
    std::vector<PeerId> spawn(std::size_t count) override { return base_.spawn(count); }
    LaunchReport collect_launches() override { return base_.collect_launches(); }
    bool in_world(PeerId peer) const override { return !linked(peer) && base_.in_world(peer); }
    bool awaits_release(PeerId peer) const override {
        return !linked(peer) && base_.awaits_release(peer);
    }
    std::vector<Release> said_goodbye(PeerId peer) override {
        return linked(peer) ? std::vector<Release>{} : base_.said_goodbye(peer);
    }
    Domain domain(PeerId peer) const override {
        return linked(peer) ? Domain{} : base_.domain(peer);
    }
    std::string describe(PeerId peer) const override {
        if (!linked(peer)) return base_.describe(peer);
        return "link" + std::to_string(link::LinkTransport::link_of(peer)) + "/slot" +
               std::to_string(link::LinkTransport::slot_of(peer));
    }
    std::vector<Release> lost(PeerId peer) override {
        return linked(peer) ? std::vector<Release>{} : base_.lost(peer);
    }
    bool can_end_in_order(PeerId peer) const override {
        return linked(peer) || base_.can_end_in_order(peer);
    }
    bool may_finalize(PeerId peer) const override {
        return linked(peer) || base_.may_finalize(peer);
    }

  private:
    Launcher& base_;
};

}  // namespace ppmpi
