// MpiTransport (mpi_transport.hpp) between real ranks, at 2 and 4 ranks.
//
// A plain main that returns the number of failed checks (as Boost.MPI's tests do), so that
// MPI_Init/MPI_Finalize stay in the hands of ppmpi::MpiSession, as in the product.
//
// Written with Boost.MPI, as the product. Every wait is a loop of non-blocking calls
// (transport.poll(), request test, iprobe) with a deadline; a deadline that passes is a failure
// and aborts the whole job (environment::abort) instead of
// leaving the other ranks to hang until CTest's TIMEOUT.
//
//  1. Echo: rank 0 posts kFrames frames (several messages each, one with a multi-MB payload,
//     one with many small messages, two with buffers) to every other rank; each echoes every
//     frame back after decoding it, in chunks of 1 MiB (so a 3 MiB buffer is three MPI
//     messages); rank 0 checks content, buffers and per-peer order (a frame without buffers
//     comes right after one with them, and must not overtake it).
//  2. Forget: rank 0 forgets peer 1, then every other rank sends frames to rank 0, the last by
//     a synchronous send (raw MPI_Issend on the transport's communicator and tag: Boost.MPI
//     has none), so that once it
//     completes, rank 0's poll() has matched every earlier frame of that rank (non-overtaking).
//     The rank then says "done" on a side communicator. Rank 0 must have returned every frame
//     of ranks 2.. and none of rank 1.
//  3. drop_comm: rank 0 adds every rank again as a peer on a second communicator (as the
//     launcher does with a spawn's intercommunicator), receives one frame from each there, then
//     drops that communicator: poll() must no longer receive from it (the ranks' next frames
//     stay unmatched until rank 0 takes them by hand), and posts to its peers are no-ops.
#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/protocol.hpp"
#include "ppmpi/mpi/mpi_session.hpp"
#include "ppmpi/mpi/mpi_transport.hpp"

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <boost/mpi/collectives.hpp>
#include <functional>
#include <map>
#include <string>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace ppmpi;
using Clock = std::chrono::steady_clock;

namespace {

int g_rank = -1;
int g_failures = 0;

#define EXPECT(cond)                                                                               \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            ++g_failures;                                                                          \
            std::fprintf(stderr, "rank %d: %s:%d: EXPECT(%s) failed\n", g_rank, __FILE__,          \
                         __LINE__, #cond);                                                         \
        }                                                                                          \
    } while (0)

constexpr int kFrames = 6;
constexpr std::size_t kBigPayload = 6u << 20; // 6 MiB: far beyond any eager limit
constexpr int kSideTag = 11;
constexpr auto kPhaseTimeout = std::chrono::seconds(40);

[[noreturn]] void give_up(const char* what) {
    std::fprintf(stderr, "rank %d: timed out: %s\n", g_rank, what);
    std::fflush(stderr);
    bmpi::environment::abort(2);
    std::_Exit(2);
}

void nap() {
    std::this_thread::sleep_for(std::chrono::microseconds(200));
}

// A payload that differs per (peer, frame, message) and per byte, so a mix-up shows.
Bytes pattern(std::size_t size, int seed) {
    Bytes b(size, '\0');
    std::uint32_t x = 2654435761u * static_cast<std::uint32_t>(seed + 1);
    for (std::size_t i = 0; i < size; ++i) {
        x = x * 1664525u + 1013904223u;
        b[i] = static_cast<char>(x >> 24);
    }
    return b;
}

// Frame `index` for `peer`: its first message is a Task whose job id encodes (peer, index).
std::vector<Message> messages_for(int peer, int index) {
    std::vector<Message> m;
    JobId id = static_cast<JobId>(peer) * 1000 + static_cast<JobId>(index);
    m.push_back(
        Message{Task{id, "key-" + std::to_string(index)}, pattern(100 + index, peer * 31 + index)});
    switch (index) {
    case 0:
        m.back().buffers = {Buffer::copy_of(pattern(100 * 1024, peer)), Buffer::copy_of("ab")};
        break;
    case 1:
        m.push_back(Message{Heartbeat{7}, {}});
        break;
    case 2:
        m.push_back(Message{FunctionDef{"big"}, pattern(kBigPayload, peer)});
        m.back().buffers = {Buffer::copy_of(pattern(3u << 20, peer + 1)), Buffer::allocate(0)};
        break;
    case 3: // many small messages in one frame
        for (int i = 0; i < 200; ++i)
            m.push_back(Message{Result{static_cast<JobId>(i), ResultStatus::Error, 0.5 * i},
                                pattern(static_cast<std::size_t>(i), i)});
        break;
    case 4: {
        Welcome w;
        w.worker_id = peer;
        w.sys_path = {"/a", "/b/c"};
        w.cwd = "/tmp";
        m.push_back(Message{w, {}});
        m.push_back(Message{Shutdown{}, {}});
        break;
    }
    default:
        m.push_back(Message{Hello{1234, 0, "host"}, "x"});
        break;
    }
    return m;
}

JobId first_job_id(const Envelope& envelope) {
    auto messages = decode_frame(envelope.frame, envelope.buffers);
    if (messages.empty() || kind_of(messages[0].header) != Kind::Task) return ~JobId{0};
    return std::get<Task>(messages[0].header).job_id;
}

// Rank 0's side of phase 1.
void echo_master(MpiTransport& transport, int size) {
    std::map<int, std::vector<Frame>> expected;
    for (int peer = 1; peer < size; ++peer)
        for (int i = 0; i < kFrames; ++i) {
            expected[peer].push_back(encode_frames(messages_for(peer, i)).at(0));
            transport.post(peer, expected[peer].back());
        }
    for (int peer = 1; peer < size; ++peer)
        EXPECT(transport.unfinished_sends(peer) <= kFrames + 3);  // + the chunks of 3 buffers

    std::map<int, std::vector<Envelope>> got;
    int total = 0;
    auto deadline = Clock::now() + kPhaseTimeout;
    while (total < kFrames * (size - 1)) {
        if (Clock::now() > deadline) give_up("rank 0 waiting for the echoes");
        auto envelope = transport.poll();
        if (!envelope) {
            nap();
            continue;
        }
        EXPECT(envelope->peer >= 1 && envelope->peer < size);
        if (envelope->peer < 1 || envelope->peer >= size) continue;
        got[static_cast<int>(envelope->peer)].push_back(std::move(*envelope));
        ++total;
    }
    for (int peer = 1; peer < size; ++peer) {
        auto& frames = got[peer];
        EXPECT(frames.size() == static_cast<std::size_t>(kFrames));
        for (std::size_t i = 0; i < frames.size() && i < expected[peer].size(); ++i) {
            // Order: frame i came back i-th; content: byte for byte.
            EXPECT(first_job_id(frames[i]) == static_cast<JobId>(peer) * 1000 + i);
            EXPECT(frames[i].frame == expected[peer][i].bytes);
            EXPECT(frames[i].buffers.size() == expected[peer][i].buffers.size());
            for (std::size_t b = 0; b < frames[i].buffers.size(); ++b)
                EXPECT(frames[i].buffers[b].view() == expected[peer][i].buffers.at(b).view());
        }
    }
    // Everything was received back, so every send of ours has completed by now (or will on
    // the next MPI progress).
    deadline = Clock::now() + kPhaseTimeout;
    for (int peer = 1; peer < size; ++peer)
        while (transport.unfinished_sends(peer) > 0) {
            if (Clock::now() > deadline) give_up("rank 0 completing its sends");
            transport.poll();
            nap();
        }
}

// Ranks 1..N-1, phase 1: echo every frame from rank 0, checking it decodes as sent.
void echo_worker(MpiTransport& transport) {
    int received = 0;
    auto deadline = Clock::now() + kPhaseTimeout;
    while (received < kFrames) {
        if (Clock::now() > deadline) give_up("a worker rank waiting for rank 0's frames");
        auto envelope = transport.poll();
        if (!envelope) {
            nap();
            continue;
        }
        EXPECT(envelope->peer == 0);
        auto decoded = decode_frame(envelope->frame, envelope->buffers);
        auto sent = messages_for(g_rank, received);
        EXPECT(decoded.size() == sent.size());
        for (std::size_t i = 0; i < decoded.size() && i < sent.size(); ++i) {
            EXPECT(decoded[i].header.index() == sent[i].header.index());
            EXPECT(decoded[i].payload == sent[i].payload);
            EXPECT(decoded[i].buffers.size() == sent[i].buffers.size());
            for (std::size_t b = 0; b < decoded[i].buffers.size(); ++b)
                EXPECT(decoded[i].buffers[b].view() == sent[i].buffers.at(b).view());
        }
        if (received == 2 && decoded.size() == 2) EXPECT(decoded[1].payload.size() == kBigPayload);
        // Echo it re-encoded: the round trip must give back the very same bytes.
        transport.post(0, encode_frames(decoded).at(0));
        ++received;
    }
    while (transport.unfinished_sends(0) > 0) {
        if (Clock::now() > deadline) give_up("a worker rank completing its echoes");
        transport.poll();
        nap();
    }
}

constexpr int kForgetFrames = 5;

Bytes forget_frame(int rank, int index) {
    return encode_frame({Message{Task{static_cast<JobId>(rank * 100 + index), "f"},
                                 pattern(index == 2 ? (1u << 20) : 64u, rank + index)}});
}

void wait_request(bmpi::request& request, const char* what) {
    auto deadline = Clock::now() + kPhaseTimeout;
    while (!request.test()) {
        if (Clock::now() > deadline) give_up(what);
        nap();
    }
}

// Boost.MPI 1.74 has no synchronous send: the one raw call of this test, wrapped.
void synchronous_send(const bmpi::communicator& comm, int dest, int tag, const Bytes& bytes) {
    MPI_Request request;
    check_mpi(MPI_Issend(bytes.data(), static_cast<int>(bytes.size()), MPI_CHAR, dest, tag, comm,
                         &request),
              "MPI_Issend");
    auto deadline = Clock::now() + kPhaseTimeout;
    for (int done = 0; !done;) {
        check_mpi(MPI_Test(&request, &done, MPI_STATUS_IGNORE), "MPI_Test");
        if (Clock::now() > deadline) give_up("a synchronous send");
        if (!done) nap();
    }
}

// Rank 0's side of phase 2.
void forget_master(MpiTransport& transport, const bmpi::communicator& dup,
                   const bmpi::communicator& side, int size) {
    transport.forget(1);
    EXPECT(transport.unfinished_sends(1) == 0);
    // Posting to a forgotten peer is a silent no-op: nothing is sent, nothing is kept.
    transport.post(1, encode_frame({Message{Heartbeat{}, {}}}));
    EXPECT(transport.unfinished_sends(1) == 0);

    char go = 'g';
    std::vector<bmpi::request> gos;
    for (int peer = 1; peer < size; ++peer) gos.push_back(side.isend(peer, kSideTag, &go, 1));

    std::map<int, std::vector<Bytes>> got;
    std::vector<char> done(static_cast<std::size_t>(size), 0);
    int done_count = 0;
    auto deadline = Clock::now() + kPhaseTimeout;
    while (done_count < size - 1) {
        if (Clock::now() > deadline) give_up("rank 0 waiting for the other ranks' frames");
        bool busy = false;
        while (auto envelope = transport.poll()) {
            busy = true;
            got[static_cast<int>(envelope->peer)].push_back(std::move(envelope->frame));
        }
        if (auto status = side.iprobe(bmpi::any_source, kSideTag)) {
            // Small message: its receive finishes at once.
            int src = status->source();
            char said = 0;
            side.recv(src, kSideTag, &said, 1);
            EXPECT(said == 'd');
            EXPECT(!done[src]);
            done[src] = 1;
            ++done_count;
            busy = true;
        }
        if (!busy) nap();
    }
    for (auto& request : gos) wait_request(request, "rank 0's go messages");

    // The forgotten peer's frames were all matched (its synchronous send completed) and none
    // came out of poll().
    EXPECT(got.count(1) == 0);
    EXPECT(got.count(-1) == 0);
    for (int peer = 2; peer < size; ++peer) {
        auto& frames = got[peer];
        EXPECT(frames.size() == static_cast<std::size_t>(kForgetFrames + 1));
        for (int i = 0; i < kForgetFrames && i < static_cast<int>(frames.size()); ++i)
            EXPECT(frames[i] == forget_frame(peer, i));
    }
    // Nothing is left unreceived from anyone: poll() took (and dropped) rank 1's frames too.
    EXPECT(!dup.iprobe(bmpi::any_source, MpiTransport::kTag));
    EXPECT(!transport.poll());
}

// Ranks 1..N-1, phase 2.
void forget_worker(MpiTransport& transport, const bmpi::communicator& dup,
                   const bmpi::communicator& side) {
    char go = 0;
    bmpi::request request = side.irecv(0, kSideTag, &go, 1);
    wait_request(request, "a worker rank waiting for rank 0's go");
    EXPECT(go == 'g');
    for (int i = 0; i < kForgetFrames; ++i)
        transport.post(0, forget_frame(g_rank, i));
    // The last frame, synchronously: complete only once rank 0 has matched it, and so every
    // frame before it.
    synchronous_send(dup, 0, MpiTransport::kTag, encode_frame({Message{Goodbye{}, {}}}));
    auto deadline = Clock::now() + kPhaseTimeout;
    while (transport.unfinished_sends(0) > 0) {
        if (Clock::now() > deadline) give_up("a worker rank completing its sends");
        transport.poll();
        nap();
    }
    char done = 'd';
    bmpi::request said = side.isend(0, kSideTag, &done, 1);
    wait_request(said, "a worker rank's done message");
    // Nothing reaches us from rank 0 in this phase (the forgotten rank 1 included).
    EXPECT(!transport.poll());
}

constexpr int kDropBase = 100; // peer ids on the second communicator: kDropBase + rank

Bytes drop_frame(int rank, int which) {
    return encode_frame({Message{Task{static_cast<JobId>(rank * 10 + which), "drop"}, "p"}});
}

// Rank 0's side of phase 3.
void drop_master(MpiTransport& transport, const bmpi::communicator& extra,
                 const bmpi::communicator& side, int size) {
    for (int peer = 1; peer < size; ++peer)
        transport.add_peer(kDropBase + peer, extra, peer);

    // Frame A from every rank comes out of poll() under its id on `extra`.
    std::map<PeerId, Bytes> first;
    auto deadline = Clock::now() + kPhaseTimeout;
    while (first.size() < static_cast<std::size_t>(size - 1)) {
        if (Clock::now() > deadline) give_up("rank 0 waiting for frames on the second comm");
        auto envelope = transport.poll();
        if (!envelope) {
            nap();
            continue;
        }
        EXPECT(envelope->peer >= kDropBase + 1 && envelope->peer < kDropBase + size);
        EXPECT(!first.count(envelope->peer));
        first[envelope->peer] = std::move(envelope->frame);
    }
    for (int peer = 1; peer < size; ++peer)
        EXPECT(first[kDropBase + peer] == drop_frame(peer, 1));

    transport.drop_comm(extra);
    for (int peer = 1; peer < size; ++peer) {
        transport.post(kDropBase + peer, drop_frame(0, 9)); // forgotten: a no-op
        EXPECT(transport.unfinished_sends(kDropBase + peer) == 0);
    }
    char dropped = 'x';
    std::vector<bmpi::request> told;
    for (int peer = 1; peer < size; ++peer)
        told.push_back(side.isend(peer, kSideTag, &dropped, 1));

    // Frame B from every rank must arrive on `extra` and stay there: poll() returns nothing
    // meanwhile, and a probe finds B, which rank 0 then receives by hand.
    std::vector<char> found(static_cast<std::size_t>(size), 0);
    int missing = size - 1;
    deadline = Clock::now() + std::chrono::seconds(10);
    while (missing > 0 && Clock::now() < deadline) {
        if (auto envelope = transport.poll()) {
            std::fprintf(stderr, "rank 0: poll() returned a frame from peer %lld after drop_comm\n",
                         static_cast<long long>(envelope->peer));
            ++g_failures;
        }
        auto status = extra.iprobe(bmpi::any_source, MpiTransport::kTag);
        if (!status) {
            nap();
            continue;
        }
        int count = status->count<char>().value_or(0), source = status->source();
        Bytes frame(static_cast<std::size_t>(count), '\0');
        extra.recv(source, MpiTransport::kTag, frame.data(), count);
        EXPECT(frame == drop_frame(source, 2));
        EXPECT(!found[source]);
        found[source] = 1;
        --missing;
    }
    if (missing > 0) {
        // poll() swallowed them (or they never came): the ranks' synchronous sends would wait
        // for ever, so end the job here.
        std::fprintf(stderr, "rank 0: %d frames sent after drop_comm were never found\n", missing);
        give_up("frames sent on a dropped communicator");
    }
    for (auto& request : told) wait_request(request, "rank 0's dropped messages");
}

// Ranks 1..N-1, phase 3: frame A, wait until rank 0 dropped the comm, frame B (synchronous:
// it completes once rank 0 has received it by hand).
void drop_worker(const bmpi::communicator& extra, const bmpi::communicator& side) {
    Bytes a = drop_frame(g_rank, 1), b = drop_frame(g_rank, 2);
    bmpi::request request =
        extra.isend(0, MpiTransport::kTag, a.data(), static_cast<int>(a.size()));
    wait_request(request, "a worker rank's frame on the second comm");
    char dropped = 0;
    request = side.irecv(0, kSideTag, &dropped, 1);
    wait_request(request, "a worker rank waiting for drop_comm");
    EXPECT(dropped == 'x');
    synchronous_send(extra, 0, MpiTransport::kTag, b);
}

} // namespace

int main() {
    int size = 0;
    {
        MpiSession session;
        g_rank = session.world_rank();
        size = session.world_size();
        if (size < 2) {
            std::fprintf(stderr, "mpi_transport_test needs at least 2 ranks\n");
            return 1;
        }
        const bmpi::communicator& world = session.world();
        bmpi::communicator dup(world, bmpi::comm_duplicate), side(world, bmpi::comm_duplicate),
            extra(world, bmpi::comm_duplicate);
        try {
            // The other ranks send in 1 MiB chunks, to test a buffer split over several.
            MpiTransport transport(g_rank == 0 ? MpiTransport::kChunkBytes : std::size_t{1} << 20);
            for (int r = 0; r < size; ++r)
                if (r != g_rank) transport.add_peer(r, dup, r);

            if (g_rank == 0) {
                // Nobody sends to rank 0 before it has sent (the other ranks may already have
                // frames from it, so only rank 0 can check this): poll returns at once, empty.
                auto before = Clock::now();
                EXPECT(!transport.poll());
                EXPECT(Clock::now() - before < std::chrono::seconds(1));
                EXPECT(transport.unfinished_sends(1) == 0);

                echo_master(transport, size);
                forget_master(transport, dup, side, size);
                drop_master(transport, extra, side, size);
            } else {
                echo_worker(transport);
                forget_worker(transport, dup, side);
                drop_worker(extra, side);
            }
        } catch (const std::exception& e) {
            std::fprintf(stderr, "rank %d: exception: %s\n", g_rank, e.what());
            ++g_failures;
        }
        // Every rank is done with the communicators before they are freed.
        world.barrier();
        int all_failures = 0;
        bmpi::reduce(world, g_failures, all_failures, std::plus<int>(), 0);
        if (g_rank == 0)
            std::printf("mpi_transport_test: %d ranks, %d failed checks\n", size, all_failures);
    } // the communicators are freed, then MPI_Finalize
    return g_failures;
}
