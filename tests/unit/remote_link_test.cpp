// Remote servers without MPI or Python: a LinkStream pair on a socketpair, and a client's
// Dispatcher whose pool has no worker of its own linked to a server's Dispatcher (link_relay.hpp)
// whose workers are threads (fake_launcher.hpp). Both dispatchers are stepped by the test.
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <cstring>

#include "fake_launcher.hpp"
#include "ppmpi/link/link_stream.hpp"

using namespace ppmpi;
using namespace ppmpi_test;

namespace {

const Bytes kOneKey(32, 'a'), kOtherKey(32, 'b');

std::pair<int, int> socket_pair() {
    int fds[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0);
    return {fds[0], fds[1]};
}

// Moves bytes both ways until `to` has a message (bounded).
std::optional<link::LinkMessage> deliver(link::LinkStream& from, link::LinkStream& to) {
    auto deadline = Clock::now() + 5s;
    while (Clock::now() < deadline) {
        from.flush();
        if (auto message = to.receive()) return message;
    }
    return std::nullopt;
}

// One dispatcher with its worker threads, stepped by the test.
struct Side {
    std::shared_ptr<LoopbackHub> hub = LoopbackHub::create();
    std::unique_ptr<Transport> master = hub->endpoint(0);
    std::shared_ptr<WorkerThreads> workers = std::make_shared<WorkerThreads>(hub);
    ThreadLauncher launcher{workers};
    std::unique_ptr<Dispatcher> dispatcher =
        std::make_unique<Dispatcher>(*master, launcher, test_dispatcher_options());
    std::shared_ptr<JobTable> jobs = std::make_shared<JobTable>();

    ~Side() {
        workers->log->open_gate();
        if (dispatcher) dispatcher->shutdown(5s);
        workers->join_all();
    }
    PoolId pool(std::size_t ncpus) {
        PoolSpec spec;
        spec.ncpus = ncpus;
        return dispatcher->create_pool(spec, jobs);
    }
};

struct Remote {
    Side server, client;
    PoolId served = server.pool(2), pool = client.pool(0);
    int link = -1;

    Remote() {
        auto [mine, theirs] = socket_pair();
        server.dispatcher->serve_link(served, theirs, {kOtherKey, kOneKey}, "test client",
                                      Clock::duration::zero());
        link = client.dispatcher->attach_link(pool, mine, {kOneKey, kOtherKey}, "test server");
    }
    template <class Pred> bool run_until(Pred done, Clock::duration limit = 10s) {
        auto deadline = Clock::now() + limit;
        while (!done()) {
            if (Clock::now() > deadline) return false;
            bool moved = client.dispatcher->step(Clock::now());
            if (server.dispatcher) moved |= server.dispatcher->step(Clock::now());
            if (!moved) std::this_thread::sleep_for(50us);
        }
        return true;
    }
    void submit(JobId id, const std::string& key, Bytes args) {
        client.jobs->create(id, 0, false);
        client.dispatcher->submit(pool, id, key, "bundle", std::move(args));
    }
};

}  // namespace

TEST_CASE("link stream: messages and buffers arrive sealed and whole", "[link]") {
    auto [a, b] = socket_pair();
    link::LinkStream one(a, {kOneKey, kOtherKey}), other(b, {kOtherKey, kOneKey});
    one.send_info({3, 42, "server-host"});
    auto info = deliver(one, other);
    REQUIRE(info);
    CHECK(info->kind == link::LinkKind::Info);
    CHECK((info->info.workers == 3 && info->info.pid == 42 && info->info.host == "server-host"));

    Bytes large((3 << 20) + 12345, '\0');  // three whole chunks and a part
    for (std::size_t i = 0; i < large.size(); ++i) large[i] = static_cast<char>(i * 7);
    Buffers buffers{Buffer::copy_of("small"), Buffer::copy_of(""), Buffer::copy_of(large)};
    one.send_slot(7, "a frame", buffers, false);
    CHECK(buffers[2].view() == large);  // not owned: sealed from a copy
    auto slot = deliver(one, other);
    REQUIRE(slot);
    CHECK((slot->kind == link::LinkKind::Slot && slot->slot == 7 && slot->frame == "a frame"));
    REQUIRE(slot->buffers.size() == 3);
    CHECK(slot->buffers[0].view() == "small");
    CHECK(slot->buffers[1].size == 0);
    CHECK(slot->buffers[2].view() == large);
}

TEST_CASE("link stream: a changed byte or an oversized length ends the link", "[link]") {
    auto [a, b] = socket_pair();
    link::FrameSealer sealer(kOneKey);
    Bytes frame = sealer.seal(std::string(1, static_cast<char>(link::LinkKind::Ping)));
    frame[5] ^= 1;
    REQUIRE(::write(a, frame.data(), frame.size()) == static_cast<ssize_t>(frame.size()));
    link::LinkStream reader(b, {kOtherKey, kOneKey});
    CHECK_THROWS_AS(reader.receive(), AuthError);

    auto [c, d] = socket_pair();
    const char huge[4] = {'\xff', '\xff', '\xff', '\xf0'};
    REQUIRE(::write(c, huge, 4) == 4);
    link::LinkStream bounded(d, {kOtherKey, kOneKey});
    CHECK_THROWS_WITH(bounded.receive(), Catch::Contains("exceeds the bound"));
    ::close(c);
    ::close(a);
}

TEST_CASE("link stream: nothing crosses the wire in the clear, and a replay ends the link",
          "[link]") {
    auto [a, b] = socket_pair();
    link::LinkStream sender(a, {kOneKey, kOtherKey});
    const std::string plain = "plain text that must not cross the wire as it is";
    sender.send_slot(1, plain, {Buffer::copy_of(plain)}, false);
    sender.flush();
    std::string wire(1 << 16, '\0');
    ssize_t got = ::recv(b, wire.data(), wire.size(), MSG_DONTWAIT);
    REQUIRE(got > 0);
    wire.resize(static_cast<std::size_t>(got));
    CHECK(wire.find("plain text") == std::string::npos);

    auto [c, d] = socket_pair();
    link::LinkStream reader(d, {kOtherKey, kOneKey});
    std::string twice = wire + wire;
    REQUIRE(::write(c, twice.data(), twice.size()) == static_cast<ssize_t>(twice.size()));
    auto first = reader.receive();
    REQUIRE(first);
    CHECK((first->frame == plain && first->buffers.at(0).view() == plain));
    CHECK_THROWS_AS(reader.receive(), AuthError);
    ::close(b);
    ::close(c);
}

TEST_CASE("remote link: a pool without workers runs its jobs on a server's", "[link]") {
    Remote remote;
    for (JobId id = 1; id <= 20; ++id) remote.submit(id, "f", "args" + std::to_string(id));
    REQUIRE(remote.run_until([&] { return remote.client.jobs->unfinished() == 0; }));
    for (JobId id = 1; id <= 20; ++id) {
        auto outcome = remote.client.jobs->take(id);
        REQUIRE(outcome);
        CHECK(outcome->outcome == Outcome::Ok);
        CHECK(outcome->payload == "bundle:" + reversed("args" + std::to_string(id)));
        CHECK(outcome->worker.rfind("test server/slot", 0) == 0);
    }
    LinkStatus status = remote.client.dispatcher->link_status(remote.link);
    CHECK((status.ready && !status.ended && status.workers == 2 && status.jobs == 20));
    CHECK(remote.server.dispatcher->link_sessions().first == 1);
    CHECK(remote.client.dispatcher->stats(remote.pool).workers == 0);  // slots are not its own
}

TEST_CASE("remote link: a job cancelled on the client is stopped on its server", "[link]") {
    Remote remote;
    remote.submit(1, "slow", "x");
    REQUIRE(remote.run_until([&] { return remote.server.dispatcher->stats(remote.served).running == 1; }));
    REQUIRE(remote.run_until([&] { return !remote.client.dispatcher->stats(remote.pool).running_jobs.empty(); }));
    CHECK(remote.client.dispatcher->cancel(remote.pool, 1));
    REQUIRE(remote.run_until([&] { return remote.server.dispatcher->stats(remote.served).running == 0; }));
    CHECK(remote.client.jobs->take(1)->outcome == Outcome::Cancelled);
    remote.submit(2, "f", "y");  // the server offered a slot in place of the stopped one
    REQUIRE(remote.run_until([&] { return remote.client.jobs->unfinished() == 0; }));
    CHECK(remote.client.jobs->take(2)->outcome == Outcome::Ok);
}

TEST_CASE("remote link: with its server gone, waiting jobs fail with NoWorkers", "[link]") {
    Remote remote;
    remote.client.dispatcher->expect_links(remote.pool, 300ms, "test server");
    remote.submit(1, "f", "x");
    REQUIRE(remote.run_until([&] { return remote.client.jobs->unfinished() == 0; }));
    remote.server.workers->log->open_gate();
    remote.server.dispatcher.reset();  // its sockets close
    REQUIRE(remote.run_until([&] { return remote.client.dispatcher->link_status(remote.link).ended; }));
    remote.submit(2, "f", "y");
    REQUIRE(remote.run_until([&] { return remote.client.jobs->unfinished() == 0; }));
    auto outcome = remote.client.jobs->take(2);
    CHECK(outcome->outcome == Outcome::NoWorkers);
    CHECK_THAT(outcome->message, Catch::Contains("no worker, local or remote") &&
                                     Catch::Contains("test server"));
}

// A socket pair is this host: the server spins for its client only behind a job awaited alone.
TEST_CASE("remote link: a server spins for a client on its host only for a lone job", "[link]") {
    Remote remote;
    remote.submit(1, "f", "x");
    remote.submit(2, "f", "y");
    REQUIRE(remote.run_until([&] { return remote.client.jobs->unfinished() == 0; }));
    CHECK_FALSE(remote.server.dispatcher->results_within(10s));  // two at once: no cue
    remote.submit(3, "f", "z");
    REQUIRE(remote.run_until([&] { return remote.client.jobs->unfinished() == 0; }));
    CHECK(remote.server.dispatcher->results_within(10s));  // its Task came awaited
}
