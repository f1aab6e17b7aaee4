// Shared-memory rings (shm_ring.hpp) and the transport layered on them (shm_transport.hpp),
// here between two loopback endpoints of one process: real POSIX segments, no MPI.
#include "ppmpi/transport/loopback_transport.hpp"
#include "ppmpi/transport/shm_transport.hpp"

#include <catch2/catch.hpp>
#include <dirent.h>
#include <future>
#include <string>
#include <thread>
#include <unistd.h>

using namespace ppmpi;

namespace {

constexpr PeerId kMaster = 0;
constexpr PeerId kWorker = 1;

Frame frame_of(const std::string& text, std::vector<std::string> buffers = {}) {
    Frame frame{text, {}};
    for (const std::string& b : buffers)
        frame.buffers.push_back(Buffer::copy_of(b));
    return frame;
}

// Descriptors this process has open now.
int open_descriptors() {
    int count = 0;
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return -1;
    while (::readdir(dir))
        ++count;
    ::closedir(dir);
    return count;
}

std::unique_ptr<ShmSegment> make_segment(std::size_t ring_bytes, std::uint64_t nonce = 7) {
    std::string why;
    auto segment = ShmSegment::create(ring_bytes, nonce, why);
    INFO(why);
    REQUIRE(segment);
    return segment;
}

// The master's and a worker's transports over one loopback hub, each an ShmTransport.
struct Pair {
    explicit Pair(bool accept = true, std::size_t ring_bytes = 4096)
        : hub(LoopbackHub::create()), master(hub->endpoint(kMaster), accept, ring_bytes),
          worker(hub->endpoint(kWorker), true, ring_bytes) {}
    // Polls `side` until it yields a frame (the loopback delivers at once: a few polls do).
    static Envelope next(ShmTransport& side) {
        for (int i = 0; i < 100; ++i)
            if (auto envelope = side.poll()) return std::move(*envelope);
        FAIL("no frame arrived");
        return {};
    }
    // Polls the master until it yields a frame, and the worker between those polls, so that
    // the worker writes out its backlog as the master reads.
    Envelope next_to_master() {
        for (int i = 0; i < 1000; ++i) {
            CHECK_FALSE(worker.poll());
            if (auto envelope = master.poll()) return std::move(*envelope);
        }
        FAIL("no frame arrived");
        return {};
    }
    std::shared_ptr<LoopbackHub> hub;
    ShmTransport master;
    ShmTransport worker;
};

}  // namespace

TEST_CASE("shm ring: records of every size wrap around the end and come out whole, in order",
          "[shm]") {
    auto segment = make_segment(1024);
    ShmRing& ring = segment->to_master();
    int written = 0, read = 0;
    for (int round = 0; round < 200; ++round) {
        std::string text(static_cast<std::size_t>(round % 37), static_cast<char>('a' + round % 26));
        std::vector<std::string> buffers;
        if (round % 3 == 0)
            buffers = {std::string(static_cast<std::size_t>(round % 50), 'x'), "yz"};
        REQUIRE(ring.try_write(frame_of(text + std::to_string(written), buffers)));
        ++written;
        if (round % 2 == 1 && round != 199) continue; // leave some unread: later records wrap
        while (read < written) {
            REQUIRE(ring.peek() == RecordKind::Frame);
            Frame frame = ring.read_frame();
            CHECK(frame.bytes.substr(frame.bytes.size() - std::to_string(read).size()) ==
                  std::to_string(read));
            ++read;
        }
    }
    CHECK_FALSE(ring.peek());
}

TEST_CASE("shm ring: a full ring refuses a record whole, and takes it once read", "[shm]") {
    auto segment = make_segment(256);
    ShmRing& ring = segment->to_worker();
    Frame big = frame_of(std::string(100, 'b')); // 16 + 100 → 120 bytes with padding
    REQUIRE(ring.try_write(big));
    REQUIRE(ring.try_write(big));
    CHECK_FALSE(ring.try_write(big)); // 240 of 256 used
    CHECK(ring.try_write_begin(frame_of("12345"))); // a 16-byte record still fits
    CHECK(ring.read_frame().bytes == big.bytes);
    CHECK(ring.try_write(big));
    CHECK(ring.read_frame().bytes == big.bytes);
    CHECK(ring.peek() == RecordKind::Begin);
    CHECK(ring.read_begin().bytes.size() == 5);
    CHECK(ring.read_frame().bytes == big.bytes);
    CHECK_FALSE(ring.peek());
}

TEST_CASE("shm ring: a frame many times the ring's size streams through it in parts, into "
          "memory of its final sizes",
          "[shm]") {
    auto segment = make_segment(1024);
    ShmRing& ring = segment->to_master();
    std::string big(50'000, ' '), small(13, ' ');
    for (std::size_t i = 0; i < big.size(); ++i)
        big[i] = static_cast<char>('a' + (i * 7) % 26);
    Frame sent = frame_of("head" + std::to_string(big.size()), {big, "", small, big.substr(9)});
    REQUIRE(ring.try_write_begin(sent));
    Frame got = ring.read_begin();
    REQUIRE(got.buffers.size() == 4);
    CHECK(got.buffers[0].size == big.size());
    CHECK(got.buffers[3].size == big.size() - 9);
    std::size_t size = ShmRing::stream_size(sent), written = 0, received = 0, parts = 0;
    while (received < size) {
        std::size_t wrote = ring.try_write_part(sent, written, 256);
        CHECK(wrote <= 256);
        written += wrote;
        if (parts++ % 3 == 0 && written < size) continue; // let the ring fill up at times
        while (ring.peek() == RecordKind::Part)
            received += ring.read_part(got, received);
    }
    CHECK(parts > size / 256);
    CHECK_FALSE(ring.peek());
    CHECK(got.bytes == sent.bytes);
    for (std::size_t i = 0; i < 4; ++i)
        CHECK(got.buffers[i].view() == sent.buffers[i].view());
    CHECK(ring.try_write_part(sent, size, 256) == 0); // nothing left to write
}

TEST_CASE("shm segment: another process maps it by its /proc path while the creator keeps "
          "the descriptor open, if nonce and size match",
          "[shm]") {
    auto created = make_segment(1024, 42);
    std::string path = created->path_for_peer();
    std::string why;
    CHECK_FALSE(ShmSegment::attach(path, 1024, 43, why));
    CHECK(why.find("nonce") != std::string::npos);
    CHECK_FALSE(ShmSegment::attach(path, 2048, 42, why));
    auto attached = ShmSegment::attach(path, 1024, 42, why);
    REQUIRE(attached);
    REQUIRE(created->to_master().try_write(frame_of("hello")));
    CHECK(attached->to_master().read_frame().bytes == "hello");
    REQUIRE(attached->to_worker().try_write(frame_of("back")));
    CHECK(created->to_worker().read_frame().bytes == "back");
    created->close_descriptor();
    CHECK_FALSE(ShmSegment::attach(path, 1024, 42, why)); // nothing left to find it by
    CHECK(attached->to_master().try_write(frame_of("still mapped")));
    CHECK(created->to_master().read_frame().bytes == "still mapped");
}

TEST_CASE("shm transport: after the handshake frames go through the rings, in order with "
          "the large ones streamed in parts",
          "[shm]") {
    int descriptors_before = open_descriptors();
    Pair pair;
    std::string why;
    pair.worker.post(kMaster, frame_of("hello over MPI")); // sent before the offer is answered
    REQUIRE(pair.worker.offer(kMaster, why));
    CHECK(Pair::next(pair.master).frame == "hello over MPI");
    CHECK_FALSE(pair.master.poll()); // reads the offer, answers it
    CHECK(pair.master.sends_through_ring(kWorker));
    pair.master.post(kWorker, frame_of("first task"));
    CHECK(Pair::next(pair.worker).frame == "first task");
    CHECK_FALSE(pair.worker.poll()); // reads the answer
    CHECK(pair.worker.sends_through_ring(kMaster));
    CHECK(open_descriptors() == descriptors_before); // closed once both sides mapped it

    // 40 frames: small ones whole (they fill and backlog a 4 KiB ring), every 7th one larger
    // than the ring (streamed), some with buffers.
    for (int i = 0; i < 40; ++i) {
        std::size_t size = i % 7 == 3 ? 9000 + static_cast<std::size_t>(i) : 150;
        std::vector<std::string> buffers;
        if (i % 5 == 0) buffers = {"buffer" + std::to_string(i)};
        pair.worker.post(kMaster,
                         frame_of(std::to_string(i) + ":" + std::string(size, '.'), buffers));
    }
    CHECK(pair.worker.unfinished_sends(kMaster) > 0); // the backlog
    for (int i = 0; i < 40; ++i) {
        Envelope envelope = pair.next_to_master(); // the worker writes out its backlog meanwhile
        INFO("frame " << i);
        CHECK(envelope.peer == kWorker);
        CHECK(envelope.frame.rfind(std::to_string(i) + ":", 0) == 0);
        CHECK(envelope.frame.size() == std::to_string(i).size() + 1 + (i % 7 == 3 ? 9000u + i : 150u));
        CHECK(envelope.buffers.size() == (i % 5 == 0 ? 1u : 0u));
        if (i % 5 == 0) CHECK(envelope.buffers[0].view() == "buffer" + std::to_string(i));
    }
    CHECK_FALSE(pair.master.poll());
    CHECK(pair.worker.unfinished_sends(kMaster) == 0);
}

TEST_CASE("shm transport: a declined offer leaves both sides on the inner transport, with no "
          "segment left behind",
          "[shm]") {
    int descriptors_before = open_descriptors();
    Pair pair(/*accept=*/false);
    std::string why;
    REQUIRE(pair.worker.offer(kMaster, why));
    pair.worker.post(kMaster, frame_of("hello"));
    CHECK(Pair::next(pair.master).frame == "hello");
    CHECK_FALSE(pair.master.sends_through_ring(kWorker));
    pair.master.post(kWorker, frame_of("welcome"));
    CHECK(Pair::next(pair.worker).frame == "welcome");
    CHECK_FALSE(pair.worker.sends_through_ring(kMaster));
    CHECK(open_descriptors() == descriptors_before);
    pair.worker.post(kMaster, frame_of("result"));
    CHECK(Pair::next(pair.master).frame == "result");
}

TEST_CASE("shm transport: a forgotten peer's ring is dropped and its frames are not delivered",
          "[shm]") {
    Pair pair;
    std::string why;
    REQUIRE(pair.worker.offer(kMaster, why));
    pair.worker.post(kMaster, frame_of("hello"));
    CHECK(Pair::next(pair.master).frame == "hello");
    pair.master.post(kWorker, frame_of("welcome"));
    CHECK(Pair::next(pair.worker).frame == "welcome");
    pair.worker.post(kMaster, frame_of("in the ring"));
    pair.master.forget(kWorker);
    CHECK_FALSE(pair.master.sends_through_ring(kWorker));
    for (int i = 0; i < 5; ++i)
        CHECK_FALSE(pair.master.poll());
    pair.master.post(kWorker, frame_of("to a forgotten peer")); // ignored, no throw
}

TEST_CASE("shm transport: a side dozes on its ring's bell only once its peer sends through the "
          "ring alone, and the peer's next frame wakes it",
          "[shm][doorbell]") {
    REQUIRE(doze_supported());
    Pair pair;
    std::string why;
    Doze early;
    CHECK_FALSE(pair.worker.plan_doze({kMaster}, early));  // no ring yet: the master uses MPI
    REQUIRE(pair.worker.offer(kMaster, why));
    CHECK_FALSE(pair.master.poll());  // the offer: the master switches
    CHECK_FALSE(pair.worker.plan_doze({kMaster}, early));  // the answer is not read yet
    CHECK_FALSE(pair.worker.poll());  // reads it: the worker switches too
    Doze plan;
    REQUIRE(pair.worker.plan_doze({kMaster}, plan));
    CHECK(plan.bells.size() == 1);
    CHECK_FALSE(plan.arrived());
    CHECK_FALSE(pair.master.plan_doze({kWorker, 9}, early));  // peer 9 talks over MPI only

    plan.until = Clock::now() + std::chrono::seconds(30);
    Wakeup wakeup;
    auto dozer = std::async(std::launch::async, [&] { return wakeup.doze(plan); });
    auto until = Clock::now() + std::chrono::seconds(10);
    while (plan.bells[0]->sleepers.load() == 0 && Clock::now() < until)
        std::this_thread::sleep_for(std::chrono::microseconds(100));
    pair.master.post(kWorker, frame_of("task"));
    REQUIRE(dozer.wait_for(std::chrono::seconds(10)) == std::future_status::ready);
    CHECK(dozer.get());
    CHECK(Pair::next(pair.worker).frame == "task");

    for (int i = 0; i < 40; ++i)  // fills the 4 KiB ring: the rest waits in a backlog
        pair.master.post(kWorker, frame_of(std::string(150, 'x')));
    Doze busy;
    CHECK_FALSE(pair.master.plan_doze({kWorker}, busy));  // it has a backlog to write out
    Doze full;
    REQUIRE(pair.worker.plan_doze({kMaster}, full));
    CHECK(full.arrived());  // records wait: no sleep
}

namespace {

// An inner transport that counts its polls and says how many peers it serves (as MPI does).
class CountingTransport : public Transport {
  public:
    explicit CountingTransport(std::unique_ptr<Transport> inner) : inner_(std::move(inner)) {}
    using Transport::post;
    void post(PeerId peer, Frame frame) override { inner_->post(peer, std::move(frame)); }
    void post_control(PeerId peer, Bytes bytes) override { inner_->post_control(peer, bytes); }
    std::optional<Envelope> poll() override {
        ++polls;
        return inner_->poll();
    }
    std::size_t unfinished_sends(PeerId peer) const override {
        return inner_->unfinished_sends(peer);
    }
    void forget(PeerId peer) override { inner_->forget(peer); }
    std::size_t live_peers() const override { return peers; }

    std::unique_ptr<Transport> inner_;
    long polls = 0;
    std::size_t peers = 1;
};

}  // namespace

TEST_CASE("shm transport: once every peer of the inner transport is on a ring it is polled at "
          "most every kQuietInnerGap, and every time again while one is not",
          "[shm]") {
    auto hub = LoopbackHub::create();
    auto counting = std::make_unique<CountingTransport>(hub->endpoint(kMaster));
    CountingTransport& inner = *counting;
    ShmTransport master(std::move(counting), true, 4096);
    ShmTransport worker(hub->endpoint(kWorker), true, 4096);
    std::string why;
    REQUIRE(worker.offer(kMaster, why));
    for (int i = 0; i < 3; ++i)  // the offer and the answer: all over the inner transport
        CHECK_FALSE(master.poll());
    CHECK_FALSE(worker.poll());
    REQUIRE(worker.sends_through_ring(kMaster));

    auto polls_in = [&](int rounds) {
        long before = inner.polls;
        int delivered = 0;
        auto start = std::chrono::steady_clock::now();
        for (int i = 0; i < rounds; ++i)
            delivered += master.poll() ? 1 : 0;
        CHECK(delivered == 0);
        auto gaps = (std::chrono::steady_clock::now() - start) / ShmTransport::kQuietInnerGap;
        return std::make_pair(inner.polls - before, static_cast<long>(gaps));
    };
    auto [quiet_polls, gaps] = polls_in(2000);
    INFO("2000 polls took " << gaps << " gaps");
    CHECK(quiet_polls <= gaps + 2);  // a bound that only grows on a slow machine

    inner.peers = 2;  // one more peer that talks over MPI only (a spawn, say)
    CHECK(polls_in(500).first == 500);

    inner.peers = 1;
    hub->deliver(kWorker, kMaster, frame_of("stray frame over MPI"));
    std::optional<Envelope> stray;
    auto until = std::chrono::steady_clock::now() + std::chrono::seconds(5);
    while (!stray && std::chrono::steady_clock::now() < until)
        stray = master.poll();
    REQUIRE(stray);  // it waited at most one gap
    CHECK(stray->frame == "stray frame over MPI");
}
