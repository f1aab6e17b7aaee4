// ppmpi/core/protocol.hpp: the messages between the master (rank 0) and its workers.
//
// A message: a header struct (Boost binary), a payload of pickled bytes C++ never looks into,
// and Buffers (buffer.hpp): pickle-5 out-of-band data, never copied. Frames: frame.hpp.
//
// The protocol, in order (M = master, W = worker):
//  1. W→M Hello{pid, start_ticks, host} once MPI is up: the master notices at once that a worker
//     on its host died, and kills a lost one safely.
//  2. M→W Welcome{worker_id, master pid/host, sys_path, cwd, timings}: the master adopts the
//     worker. A worker in an mpirun world may wait here until a Server claims it.
//  3. M→W FunctionDef{key} + payload(pickled function bundle), before the first Task with a key
//     new to the worker; the key, the bundle's digest, never names another function (pp's did).
//  4. M→W Task{job_id, func_key, awaited} + payload(pickled args) + buffers(the args' large
//     arrays), several in flight per worker, run in the order they came. awaited (only to a
//     remote server's slot): the job is its Server's only unfinished one (a server may spin).
//     M→W Withdraw{job_id}: the master takes back a task waiting behind the running job; W
//     answers Result{job_id, Withdrawn} if it had not started, else nothing (its result comes).
//     M→W Gang{job_id, ranks} right before a parallel job's Task (gangs.hpp), to each of its
//     idle members: they make the job's communicator of those ranks of their MPI world.
//  5. W→M Result{job_id, status, seconds, cpu_wait_seconds} + payload(pickled outcome) + buffers.
//     A remote server's slot (link_stream.hpp) may answer Lost (its worker died running it;
//     payload: why) or Failed{outcome} (the server's limit; payload: the message).
//  6. Heartbeat both ways every heartbeat_ms (the worker's from its comm thread, job or not).
//  7. M→W Shutdown{immediate=false}: the worker drops queued tasks, answers W→M Goodbye; one
//     spawned alone then disconnects, finalizes and exits; one that shares MPI_Finalize with
//     others (a world rank, one of a batch spawned together) waits, idle, for M→W
//     Release{finalize} (to a batch once all said Goodbye, to a world when the master ends).
//     M→W Shutdown{immediate=true}: the worker leaves at once, no Goodbye, disconnect or
//     finalize (a running job gets a short grace): its job timed out or was cancelled, or a
//     process it shares MPI collectives with was lost (those would wait forever).
//  8. Nested jobs (a job submits jobs; children.hpp): W→M FunctionDef{key} + bundle once per key
//     and worker, then W→M Submit{job_id (made by the worker: top bit set), parent, func_key,
//     timeout_ms} + args + buffers: a child of the worker's running job `parent`, queued ahead
//     of top-level jobs. W→M Waiting{job_id}: a job there waits for its child; one not started
//     yet is sent to that worker (taken back first if it waits behind another worker's job),
//     whose waiting job runs it inline. M→W Result{child} + payload: the child's outcome, to the
//     worker that submitted it (Failed{outcome} + message: it ended on the master).
//  A worker the master declared lost is never sent anything again (on its host: killed by pid).
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "ppmpi/core/buffer.hpp"
namespace ppmpi {
using JobId = std::uint64_t;
using Bytes = std::string;
enum class Kind : std::uint8_t { Hello = 0, Welcome, FunctionDef, Task, Result, Heartbeat,
    Shutdown, Goodbye, Release, Withdraw, Gang, Submit, Waiting };
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
    bool awaited = false;
    template <class Archive> void serialize(Archive& ar, unsigned) {
        ar & job_id & func_key & awaited;
    }
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
struct Gang {
    JobId job_id = 0;
    std::vector<std::int32_t> ranks;  // the members' ranks in their world, in the job's order
    template <class Archive> void serialize(Archive& ar, unsigned) {
        std::uint32_t count = static_cast<std::uint32_t>(ranks.size());
        ar & job_id & count;
        if (count > (1u << 20)) throw std::length_error("a gang of " + std::to_string(count));
        ranks.resize(count);
        for (std::int32_t& rank : ranks) ar & rank;
    }
};
struct Submit {
    JobId job_id = 0, parent = 0;
    std::string func_key;
    std::uint32_t timeout_ms = 0;  // 0: none
    template <class Archive> void serialize(Archive& ar, unsigned) {
        ar & job_id & parent & func_key & timeout_ms;
    }
};
struct Waiting {
    JobId job_id = 0;
    template <class Archive> void serialize(Archive& ar, unsigned) { ar & job_id; }
};
// Alternatives are in Kind order: the variant index is the Kind byte on the wire.
using Header = std::variant<Hello, Welcome, FunctionDef, Task, Result, Heartbeat, Shutdown,
                            Goodbye, Release, Withdraw, Gang, Submit, Waiting>;

Kind kind_of(const Header& header);
const char* kind_name(Kind kind);

}  // namespace ppmpi

#include "ppmpi/core/frame.hpp"  // every user of these messages sends or reads them in frames
