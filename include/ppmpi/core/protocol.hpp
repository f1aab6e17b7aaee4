// ppmpi/core/protocol.hpp: the messages between the master (rank 0) and its workers.
//
// Every MPI message is one *frame* of one or more messages (a deep queue costs one MPI message
// per worker per dispatcher step). A message: a header struct (Boost.Serialization, binary), a
// payload of pickled bytes the C++ side never looks into, and Buffers (buffer.hpp): pickle-5
// out-of-band data, MPI messages of their own right after the frame, never copied.
// Frame layout: u32 count, then per message: u32 header_len, u64 payload_len, u32 buffer_count,
// u64 size of each buffer, header, payload. A header starts with its Kind byte. A frame's
// buffers are those of its messages, in order.
//
// The protocol, in order (M = master, W = worker):
//  1. W→M Hello{pid, start_ticks, host}: sent once the worker's MPI is up. Pid and start time
//     let the master notice at once that a worker on its host died, and kill a lost one safely.
//  2. M→W Welcome{worker_id, master pid/host, sys_path, cwd, timings}: the master adopts the
//     worker. A worker in an mpirun world may wait here until a Server claims it.
//  3. M→W FunctionDef{key} + payload(pickled function bundle): sent before the first Task that
//     needs a key this worker has not seen. The key is a content digest of the bundle, so a new
//     function can never be mistaken for an old one (pp's id()-keyed cache bug).
//  4. M→W Task{job_id, func_key} + payload(pickled args) + buffers(the args' large arrays).
//     Several may be in flight per worker; it runs them in the order they came.
//     M→W Withdraw{job_id}: the master takes back a task still waiting on this worker behind
//     its running job (another worker has nothing to do). W answers Result{job_id, Withdrawn}
//     if the task had not started; if it had, nothing (its result comes as usual).
//  5. W→M Result{job_id, status, seconds, cpu_wait_seconds} + payload(pickled outcome) + buffers.
//     A remote server's slot (link_stream.hpp) may also answer Lost (its worker died running
//     it; payload: why) or Failed{outcome} (the server's limit; payload: the message).
//  6. W→M Heartbeat every heartbeat_ms from the worker's comm thread, even while a job runs;
//     M→W Heartbeat likewise, so a worker notices a dead master.
//  7. M→W Shutdown{immediate=false}: the worker drops queued tasks, answers W→M Goodbye, then
//     a worker spawned alone disconnects from the master, finalizes and exits; one that shares
//     MPI_Finalize with others (a world rank, or one of a batch spawned together) stops serving
//     and waits, idle, for M→W Release{finalize}, sent to a batch once its last member said
//     Goodbye and to a world when the master ends, then finalizes if told to (no disconnect).
//     M→W Shutdown{immediate=true}: the worker leaves at once without Goodbye, disconnect or
//     finalize (a job still running gets a short grace). Sent to a worker whose job timed out or
//     was cancelled, and to every worker that can no longer end in order because a process it
//     shares MPI collectives with was lost (a disconnect or finalize would wait forever).
//  A worker the master declared lost is never sent anything again; on the master's host it is
//  killed by pid.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "ppmpi/core/buffer.hpp"
namespace ppmpi {
using JobId = std::uint64_t;
using Bytes = std::string;
enum class Kind : std::uint8_t {
    Hello = 0, Welcome, FunctionDef, Task, Result, Heartbeat, Shutdown, Goodbye, Release, Withdraw
};
struct Hello {
    std::int64_t pid = 0;
    std::uint64_t start_ticks = 0;
    std::string host;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & pid & start_ticks & host; }
};
struct Welcome {
    std::int64_t worker_id = 0;
    std::int64_t master_pid = 0;
    std::string master_host;
    std::vector<std::string> sys_path;
    std::string cwd;
    std::int32_t heartbeat_ms = 500;
    std::int32_t master_timeout_ms = 30000;
    template <class Archive> void serialize(Archive& ar, unsigned) {
        // sys_path by hand: Boost's vector writes class information once per (reused) archive.
        std::uint32_t count = static_cast<std::uint32_t>(sys_path.size());
        ar & worker_id & master_pid & master_host & count;
        if (count > 100000) throw std::length_error("sys_path of " + std::to_string(count));
        sys_path.resize(count);
        for (std::string& entry : sys_path) ar & entry;
        ar & cwd & heartbeat_ms & master_timeout_ms;
    }
};
struct FunctionDef {
    std::string key;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & key; }
};
struct Task {
    JobId job_id = 0;
    std::string func_key;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & job_id & func_key; }
};
enum class ResultStatus : std::uint8_t { Ok = 0, Error, Withdrawn, Lost, Failed };
struct Result {
    JobId job_id = 0;
    ResultStatus status = ResultStatus::Ok;
    double seconds = 0.0;           // time the job ran on the worker, of which waiting for a CPU:
    double cpu_wait_seconds = 0.0;  // core/cpu_wait.hpp
    std::uint8_t outcome = 0;       // Failed: an Outcome code (outcomes.hpp)
    template <class Archive> void serialize(Archive& ar, unsigned) {
        ar & job_id & status & seconds & cpu_wait_seconds & outcome;
    }
};
struct Heartbeat {
    std::uint64_t jobs_done = 0;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & jobs_done; }
};
struct Shutdown {
    bool immediate = false;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & immediate; }
};
struct Goodbye { template <class Archive> void serialize(Archive&, unsigned) {} };
struct Release {
    bool finalize = true;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & finalize; }
};
struct Withdraw {
    JobId job_id = 0;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & job_id; }
};
// Alternatives are in Kind order: the variant index is the Kind byte on the wire.
using Header = std::variant<Hello, Welcome, FunctionDef, Task, Result, Heartbeat, Shutdown,
                            Goodbye, Release, Withdraw>;

struct Message {
    Header header;
    Bytes payload;
    Buffers buffers = {};
};
struct Frame {  // what one MPI message carries (the bytes), then its buffers
    Bytes bytes;
    Buffers buffers = {};
    // Wakes a worker dozing while its job runs (doorbell.hpp)? Not for tasks and heartbeats
    // only: read when the job ends. encode_frames sets it.
    bool urgent = true;
};

// The largest frame (one MPI message of MPI_BYTE counts at most INT_MAX bytes), and the largest
// payload one message may carry in it (room left for the frame and header).
constexpr std::size_t kMaxFrameBytes = 0x7fffffff;
constexpr std::size_t kMaxPayloadBytes = kMaxFrameBytes - 64 * 1024;

// Encodes messages that carry no buffers into one frame's bytes.
Bytes encode_frame(const std::vector<Message>& messages);
// Encodes messages into as few frames as keep each within kMaxFrameBytes, in order.
std::vector<Frame> encode_frames(const std::vector<Message>& messages);
// Decodes a frame and hands its buffers to their messages; throws ProtocolError on a truncated
// or malformed frame, or buffers that do not match what the frame lists.
std::vector<Message> decode_frame(std::string_view frame, Buffers buffers = {});

Kind kind_of(const Header& header);
const char* kind_name(Kind kind);

}  // namespace ppmpi
