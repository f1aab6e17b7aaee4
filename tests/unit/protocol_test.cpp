// protocol.hpp: frames of messages, their round trip and their rejection when malformed.
#include <catch2/catch.hpp>

#include <cstring>
#include <limits>
#include <thread>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/protocol.hpp"

using namespace ppmpi;

namespace {

Message round_trip_one(Message message) {
    auto decoded = decode_frame(encode_frame({message}));
    REQUIRE(decoded.size() == 1);
    REQUIRE(decoded[0].header.index() == message.header.index());
    CHECK(decoded[0].payload == message.payload);
    return std::move(decoded[0]);
}

Bytes all_byte_values(std::size_t size) {
    Bytes out(size, '\0');
    for (std::size_t i = 0; i < size; ++i) out[i] = static_cast<char>((i * 131 + 7) & 0xff);
    return out;
}

// Offset of the first message's header inside a frame without buffers: u32 count,
// u32 header_len, u64 payload_len, u32 buffer_count.
constexpr std::size_t kFirstHeader = 4 + 4 + 8 + 4;

void set_u64(Bytes& frame, std::size_t at, std::uint64_t value) {
    std::memcpy(&frame[at], &value, sizeof value);
}

}  // namespace

TEST_CASE("protocol: Hello and Welcome round trip with every field", "[protocol]") {
    Hello hello{-4242, 123456789u, "node-7.cluster"};
    auto h = std::get<Hello>(round_trip_one({hello, {}}).header);
    CHECK(h.pid == -4242);
    CHECK(h.start_ticks == 123456789u);
    CHECK(h.host == "node-7.cluster");

    Welcome w;
    w.worker_id = 17;
    w.master_pid = 99999;
    w.master_host = "master-host";
    w.sys_path = {"", "/opt/lib/python3", std::string("with\0nul", 8), "/home/u/é"};
    w.cwd = "/tmp/work dir";
    w.heartbeat_ms = 123;
    w.master_timeout_ms = 45678;
    auto got = std::get<Welcome>(round_trip_one({w, "payload"}).header);
    CHECK(got.worker_id == 17);
    CHECK(got.master_pid == 99999);
    CHECK(got.master_host == "master-host");
    CHECK(got.sys_path == w.sys_path);
    CHECK(got.cwd == "/tmp/work dir");
    CHECK(got.heartbeat_ms == 123);
    CHECK(got.master_timeout_ms == 45678);

    Welcome empty_path;
    CHECK(std::get<Welcome>(round_trip_one({empty_path, {}}).header).sys_path.empty());
}

TEST_CASE("protocol: FunctionDef, Task and Result round trip", "[protocol]") {
    auto def = std::get<FunctionDef>(round_trip_one({FunctionDef{"sha256:abcd"}, "bundle"}).header);
    CHECK(def.key == "sha256:abcd");

    const JobId big = std::numeric_limits<JobId>::max() - 3;
    auto task = std::get<Task>(round_trip_one({Task{big, "k1"}, "args"}).header);
    CHECK(task.job_id == big);
    CHECK(task.func_key == "k1");
    CHECK_FALSE(task.awaited);
    CHECK(std::get<Task>(round_trip_one({Task{1, "k", true}, {}}).header).awaited);

    for (auto status : {ResultStatus::Ok, ResultStatus::Error}) {
        auto r = std::get<Result>(round_trip_one({Result{77, status, 1.25, 0.5}, "res"}).header);
        CHECK(r.job_id == 77);
        CHECK(r.status == status);
        CHECK(r.seconds == 1.25);
        CHECK(r.cpu_wait_seconds == 0.5);
    }
}

TEST_CASE("protocol: Heartbeat, Shutdown, Goodbye, Release round trip", "[protocol]") {
    auto hb = std::get<Heartbeat>(round_trip_one({Heartbeat{(1ull << 63) + 5}, {}}).header);
    CHECK(hb.jobs_done == (1ull << 63) + 5);
    CHECK(kind_of(round_trip_one({Shutdown{}, {}}).header) == Kind::Shutdown);
    CHECK(kind_of(round_trip_one({Goodbye{}, {}}).header) == Kind::Goodbye);
    CHECK(kind_of(round_trip_one({Release{}, "x"}).header) == Kind::Release);
}

TEST_CASE("protocol: a frame of tasks and heartbeats is not urgent; one with anything else is",
          "[protocol]") {
    auto urgent = [](std::vector<Message> messages) {
        auto frames = encode_frames(messages);
        REQUIRE(frames.size() == 1);
        return frames[0].urgent;
    };
    Message def{FunctionDef{"k"}, "f"}, task{Task{1, "k"}, "args"}, beat{Heartbeat{}, {}};
    CHECK_FALSE(urgent({def, task, task}));
    CHECK_FALSE(urgent({beat}));
    CHECK(urgent({task, Message{Withdraw{1}, {}}}));
    CHECK(urgent({Message{Shutdown{false}, {}}}));
    CHECK(urgent({Message{Release{true}, {}}}));
    CHECK(urgent({Message{Welcome{}, {}}}));
    CHECK(urgent({Message{Result{1, ResultStatus::Ok, 0.0}, "r"}}));
}

TEST_CASE("protocol: many messages per frame keep their order and payloads", "[protocol]") {
    std::vector<Message> in;
    in.push_back({Welcome{}, {}});
    in.push_back({FunctionDef{"f"}, "def-bytes"});
    for (JobId j = 1; j <= 50; ++j) in.push_back({Task{j, "f"}, "args" + std::to_string(j)});
    in.push_back({Heartbeat{3}, {}});
    in.push_back({Shutdown{}, {}});

    auto out = decode_frame(encode_frame(in));
    REQUIRE(out.size() == in.size());
    CHECK(kind_of(out[0].header) == Kind::Welcome);
    CHECK(std::get<FunctionDef>(out[1].header).key == "f");
    CHECK(out[1].payload == "def-bytes");
    for (JobId j = 1; j <= 50; ++j) {
        CHECK(std::get<Task>(out[j + 1].header).job_id == j);
        CHECK(out[j + 1].payload == "args" + std::to_string(j));
    }
    CHECK(std::get<Heartbeat>(out[52].header).jobs_done == 3);
    CHECK(kind_of(out[53].header) == Kind::Shutdown);
}

TEST_CASE("protocol: empty frame, empty, binary and large payloads", "[protocol]") {
    CHECK(decode_frame(encode_frame({})).empty());

    CHECK(round_trip_one({Task{1, "k"}, {}}).payload.empty());

    Bytes binary("\0\x01\xff\0\0pickle\x80\x04\0", 15);
    REQUIRE(binary.size() == 15);
    CHECK(round_trip_one({Result{2, ResultStatus::Ok, 0.0}, binary}).payload == binary);

    Bytes large = all_byte_values(5u << 20);  // 5 MiB, every byte value, NULs included
    auto frame = encode_frame({{FunctionDef{"big"}, large}, {Task{3, "big"}, binary}});
    CHECK(frame.size() > large.size());
    auto out = decode_frame(frame);
    REQUIRE(out.size() == 2);
    CHECK(out[0].payload.size() == large.size());
    CHECK(out[0].payload == large);
    CHECK(out[1].payload == binary);
}

TEST_CASE("protocol: every truncation of a frame throws ProtocolError", "[protocol]") {
    Bytes frame = encode_frame({{Hello{5, 0, "h"}, "p1"}, {Task{9, "k"}, Bytes("\0\0", 2)},
                                {Shutdown{}, {}}});
    for (std::size_t len = 0; len < frame.size(); ++len) {
        INFO("prefix length " << len << " of " << frame.size());
        CHECK_THROWS_AS(decode_frame(std::string_view(frame).substr(0, len)), ProtocolError);
    }
}

TEST_CASE("protocol: trailing bytes, garbage and lying lengths throw ProtocolError",
          "[protocol]") {
    Bytes frame = encode_frame({{Task{1, "k"}, "args"}});
    CHECK_THROWS_AS(decode_frame(frame + "x"), ProtocolError);
    CHECK_THROWS_AS(decode_frame(frame + frame), ProtocolError);

    CHECK_THROWS_AS(decode_frame("garbage!garbage!garbage!"), ProtocolError);
    CHECK_THROWS_AS(decode_frame(Bytes(64, '\xff')), ProtocolError);

    Bytes huge_payload = frame;  // payload_len far beyond the frame
    set_u64(huge_payload, 8, std::numeric_limits<std::uint64_t>::max() - 2);
    CHECK_THROWS_AS(decode_frame(huge_payload), ProtocolError);

    Bytes huge_count = frame;  // claims 2^32-1 messages
    huge_count[0] = huge_count[1] = huge_count[2] = huge_count[3] = '\xff';
    CHECK_THROWS_AS(decode_frame(huge_count), ProtocolError);

    // A header cut short inside the frame: header_len shrinks by 4, payload_len grows by 4.
    Bytes hello = encode_frame({{Hello{1, 0, "some-host-name"}, {}}});
    std::uint32_t header_len;
    std::memcpy(&header_len, &hello[4], 4);
    header_len -= 4;
    std::memcpy(&hello[4], &header_len, 4);
    set_u64(hello, 8, 4);
    CHECK_THROWS_AS(decode_frame(hello), ProtocolError);
}

TEST_CASE("protocol: an unknown kind byte throws ProtocolError", "[protocol]") {
    for (unsigned char kind : {9, 10, 200, 255}) {
        Bytes frame = encode_frame({{Shutdown{}, {}}});
        REQUIRE(static_cast<unsigned char>(frame[kFirstHeader]) ==
                static_cast<unsigned char>(Kind::Shutdown));
        frame[kFirstHeader] = static_cast<char>(kind);
        INFO("kind byte " << int(kind));
        CHECK_THROWS_AS(decode_frame(frame), ProtocolError);
    }
}

// Boost sizes a string before reading it, so a corrupt length field throws length_error or
// bad_alloc inside the archive: decode must still report it as a ProtocolError, the one error
// the comm loops catch.
TEST_CASE("protocol: a header claiming a huge string length throws ProtocolError",
          "[protocol]") {
    const std::string host = "abcdefgh";
    Bytes frame = encode_frame({{Hello{1, 0, host}, {}}});
    Bytes length_and_text(8, '\0');
    length_and_text[0] = static_cast<char>(host.size());
    length_and_text += host;
    auto at = frame.find(length_and_text);
    REQUIRE(at != Bytes::npos);
    set_u64(frame, at, std::numeric_limits<std::uint64_t>::max() - 15);
    CHECK_THROWS_AS(decode_frame(frame), ProtocolError);
}

TEST_CASE("protocol: kind_of and kind_name", "[protocol]") {
    std::vector<std::pair<Header, const char*>> cases{
        {Hello{}, "Hello"},         {Welcome{}, "Welcome"},   {FunctionDef{}, "FunctionDef"},
        {Task{}, "Task"},           {Result{}, "Result"},     {Heartbeat{}, "Heartbeat"},
        {Shutdown{}, "Shutdown"},   {Goodbye{}, "Goodbye"},   {Release{}, "Release"},
        {Withdraw{}, "Withdraw"},   {Gang{}, "Gang"},         {Submit{}, "Submit"},
        {Waiting{}, "Waiting"}};
    for (std::size_t i = 0; i < cases.size(); ++i) {
        Kind kind = kind_of(cases[i].first);
        CHECK(static_cast<std::size_t>(kind) == i);
        CHECK(std::string(kind_name(kind)) == cases[i].second);
    }
    CHECK(std::string(kind_name(static_cast<Kind>(13))) == "Unknown");
    CHECK(std::string(kind_name(static_cast<Kind>(250))) == "Unknown");
}

TEST_CASE("protocol: buffers travel beside the frame, by reference, in message order",
          "[protocol][buffers]") {
    Buffer big = Buffer::copy_of(all_byte_values(3 << 20));  // pooled size class
    Buffer small = Buffer::copy_of("tiny");
    Buffer empty = Buffer::allocate(0);
    std::vector<Message> in{{Task{1, "k"}, "args1", {big, small}},
                            {Heartbeat{}, {}, {}},
                            {Result{2, ResultStatus::Ok, 0.5}, "res", {empty}}};
    auto frames = encode_frames(in);
    REQUIRE(frames.size() == 1);
    REQUIRE(frames[0].buffers.size() == 3);
    CHECK(frames[0].buffers[0].data == big.data);  // not copied
    CHECK(frames[0].bytes.size() < 200);           // the data is not in the frame
    auto out = decode_frame(frames[0].bytes, frames[0].buffers);
    REQUIRE(out.size() == 3);
    REQUIRE(out[0].buffers.size() == 2);
    CHECK(out[0].buffers[0].view() == big.view());
    CHECK(out[0].buffers[1].view() == "tiny");
    CHECK(out[1].buffers.empty());
    REQUIRE(out[2].buffers.size() == 1);
    CHECK(out[2].buffers[0].size == 0);
    CHECK(out[2].payload == "res");
}

TEST_CASE("protocol: buffers that do not match the frame throw ProtocolError",
          "[protocol][buffers]") {
    auto frames = encode_frames({{Task{1, "k"}, "a", {Buffer::copy_of("12345")}}});
    const Bytes& bytes = frames[0].bytes;
    CHECK_THROWS_AS(decode_frame(bytes), ProtocolError);  // missing
    CHECK_THROWS_AS(decode_frame(bytes, {Buffer::copy_of("1234")}), ProtocolError);  // size
    CHECK_THROWS_AS(decode_frame(bytes, {Buffer::copy_of("12345"), Buffer::copy_of("x")}),
                    ProtocolError);  // one too many
    CHECK(decode_frame(bytes, {Buffer::copy_of("54321")})[0].buffers[0].view() == "54321");
    // encode_frame is for messages without buffers only
    CHECK_THROWS_AS(encode_frame({{Task{1, "k"}, "a", {Buffer::copy_of("1")}}}), InternalError);
}

TEST_CASE("buffer: large blocks are reused once freed, small ones are not pooled",
          "[buffers]") {
    char* first = nullptr;
    {
        Buffer a = Buffer::allocate(5 << 20);
        first = a.data;
        a.data[0] = 'x';
        a.data[a.size - 1] = 'y';
    }
    Buffer b = Buffer::allocate(4 << 20);  // fits the freed 5 MiB block (within twice its size)
    CHECK(b.data == first);
    Buffer c = Buffer::allocate(1 << 20);  // the 5 MiB block is in use; a new one
    CHECK(c.data != first);
    Buffer d = Buffer::allocate(100);
    CHECK(d.size == 100);
}

// The archives are reused across messages (protocol.cpp): that is only sound if an archive
// writes every message the same way whatever it wrote before, and reads it the same way
// whatever it read before (Boost class information, written once per archive, would break it).
TEST_CASE("protocol: a message encodes to the same bytes every time, on any thread",
          "[protocol]") {
    Welcome w;
    w.worker_id = 3;
    w.sys_path = {"/x", "", "/y/z"};
    std::vector<Message> all{{Hello{1, 2, "h"}, {}},    {w, {}},          {FunctionDef{"k"}, {}},
                             {Task{4, "k"}, {}},        {Result{5, ResultStatus::Error, 1.5}, {}},
                             {Heartbeat{6}, {}},        {Shutdown{true}, {}}, {Goodbye{}, {}},
                             {Release{false}, {}},     {Withdraw{7}, {}},
                             {Gang{8, {3, 1, 2}}, {}}, {Submit{9, 3, "k", 5}, {}},
                             {Waiting{9}, {}}};
    for (const Message& m : all) {
        INFO(kind_name(kind_of(m.header)));
        Bytes first = encode_frame({m});
        CHECK(encode_frame({m}) == first);
        CHECK(encode_frame({m, m}).size() == 2 * first.size() - 4);  // one count, two messages
        std::vector<Message> on_a_fresh_thread;
        std::thread([&] { on_a_fresh_thread = decode_frame(encode_frame({m})); }).join();
        REQUIRE(on_a_fresh_thread.size() == 1);
        CHECK(on_a_fresh_thread[0].header.index() == m.header.index());
        CHECK(decode_frame(first).at(0).header.index() == m.header.index());
    }
    auto back = std::get<Welcome>(decode_frame(encode_frame({{w, {}}, {w, {}}})).at(1).header);
    CHECK(back.sys_path == w.sys_path);
}

TEST_CASE("protocol: a string length beyond the header is refused before allocating",
          "[protocol]") {
    Bytes frame = encode_frame({Message{Hello{1, 2, "host"}, ""}});
    auto at = frame.find("host");
    REQUIRE(at != Bytes::npos);
    Bytes huge = frame;
    std::uint64_t length = 0x7fffffffffffffffULL;  // Boost writes a string's length, then it
    std::memcpy(&huge[at - sizeof length], &length, sizeof length);
    CHECK_THROWS_WITH(decode_frame(huge), Catch::Contains("a string of 9223372036854775807"));
    CHECK(std::get<Hello>(decode_frame(frame).at(0).header).host == "host");  // still decodes
}
