// bench/sim/sim_farm.hpp: thousands of fake workers in one thread, for measuring the master alone.
//
// A SimNetwork joins a master-side Transport to a Farm that plays every worker: it says Hello
// for each, answers each Task with a Result at once (reporting `job_seconds` of run time, so the
// master pipelines as it would for such jobs), sends each worker's Heartbeat every interval the
// Welcome names (unless it sent a Result since its last one, as a real worker does), and says
// Goodbye on Shutdown. Nothing here costs the master anything a real
// worker would not: what the master spends per job and per heartbeat is its own.
#pragma once

#include <atomic>
#include <deque>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "ppmpi/master/launcher.hpp"
#include "ppmpi/transport/transport.hpp"

namespace ppmpi_bench {

using namespace ppmpi;

// Two queues under one lock: the master's inbox and the farm's.
class SimNetwork {
  public:
    void to_farm(Envelope envelope);
    void to_master(std::deque<Envelope>& envelopes);  // takes them all
    std::optional<Envelope> master_receive();
    // Everything for the farm; if nothing, after sleeping `wait`.
    std::deque<Envelope> farm_receive(std::chrono::microseconds wait);

  private:
    std::mutex mutex_;
    std::deque<Envelope> master_inbox_, farm_inbox_;
    std::deque<Envelope> master_taken_;  // the master's thread only
};

// The master's end of the network (Envelope::peer: the worker a frame is for or from).
class SimTransport : public Transport {
  public:
    explicit SimTransport(std::shared_ptr<SimNetwork> net) : net_(std::move(net)) {}
    using Transport::post;
    void post(PeerId peer, Frame frame) override;
    void post_control(PeerId, Bytes) override {}
    std::optional<Envelope> poll() override { return net_->master_receive(); }
    std::size_t unfinished_sends(PeerId) const override { return 0; }
    void forget(PeerId) override {}

  private:
    std::shared_ptr<SimNetwork> net_;
};

// The workers are ranks 1..N of a world that exists from the start; nothing is spawned.
class SimLauncher : public Launcher {
  public:
    explicit SimLauncher(std::size_t workers) : workers_(workers) {}
    std::vector<PeerId> static_peers() override;
    std::vector<PeerId> spawn(std::size_t) override;
    bool in_world(PeerId) const override { return true; }
    std::vector<Release> said_goodbye(PeerId) override { return {}; }
    std::string describe(PeerId peer) const override { return std::to_string(peer); }
    std::vector<Release> lost(PeerId) override { return {}; }
    bool can_end_in_order(PeerId) const override { return true; }

  private:
    std::size_t workers_;
};

class Farm {
  public:
    Farm(std::shared_ptr<SimNetwork> net, std::size_t workers, double job_seconds);
    ~Farm();
    void set_job_seconds(double seconds) { job_seconds_ = seconds; }
    std::uint64_t heartbeats_sent() const { return heartbeats_.load(); }

  private:
    struct Due {
        Clock::time_point at;
        PeerId peer;
    };
    void run();
    void answer(const Envelope& envelope, std::vector<Message>& results, PeerId& goodbye);
    void send_heartbeats(Clock::time_point now);

    std::shared_ptr<SimNetwork> net_;
    std::size_t workers_;
    std::atomic<double> job_seconds_;
    std::vector<std::int32_t> interval_ms_;  // per worker, from its Welcome (0: not yet)
    std::vector<Clock::time_point> last_sent_;  // per worker: its last frame
    std::deque<Due> heartbeat_due_;          // one interval for all: in time order
    std::deque<Envelope> outgoing_;          // to the master at the end of each round
    std::atomic<std::uint64_t> heartbeats_{0};
    std::atomic<bool> stop_{false};
    std::thread thread_;
};

}  // namespace ppmpi_bench
