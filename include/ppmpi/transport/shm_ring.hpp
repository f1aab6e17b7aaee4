// ppmpi/transport/shm_ring.hpp: one-way rings of frames in POSIX shared memory, between two processes of
// one host (shm_transport.hpp says when and why they are used).
//
// A ShmSegment holds two rings, one per direction. A ring has one writing and one reading
// process, each calling it from one thread at a time (the thread holding its baton), so it is
// a single-producer single-consumer queue and needs no lock:
//  - positions (`head`, `tail`) only grow; a byte's offset is position mod capacity, so a
//    record may wrap around the end;
//  - the writer copies a whole record in, then publishes `head` (release); the reader loads
//    `head` (acquire), copies the record out, then publishes `tail` (release), which the
//    writer loads (acquire) before reusing that space. A record is seen whole or not at all,
//    even if its writer dies halfway.
// A record: u32 kind, u32 buffer count n, u64 frame length, then by kind
//  - Frame: u64 size of each buffer, the frame's bytes, its buffers;
//  - Begin (a frame too large for one record starts): u64 size of each buffer;
//  - Part (the next bytes of that frame's stream: its bytes, then its buffers, in order):
//    `frame length` bytes of it;
// then zero padding to a multiple of 8 bytes. A streamed frame takes a copy into the ring and
// one out of it, straight into the memory its arrays are built on, part by part as the reader
// frees room, so a frame of any size passes through a ring of fixed size.
// The segment's pages are reserved when it is created (posix_fallocate): a lack of memory then
// fails the creation cleanly instead of killing a process with SIGBUS on first touch.
#pragma once

#include "ppmpi/core/doorbell.hpp"
#include "ppmpi/transport/transport.hpp"

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace ppmpi {

static_assert(std::atomic<std::uint64_t>::is_always_lock_free, "rings need lock-free atomics");

// The shared part of one ring, at the start of its region of the segment.
struct RingControl {
    alignas(64) std::atomic<std::uint64_t> head; // written by the writer only
    alignas(64) std::atomic<std::uint64_t> tail; // written by the reader only
    // Set by the writer when it starts sending through this ring (shm_transport.hpp, step 4):
    // `mpi_before` first, then `switched` (release).
    alignas(64) std::atomic<std::uint32_t> switched;
    std::uint64_t mpi_before;
    // The reader dozes on it; the writer rings it after each record (doorbell.hpp).
    alignas(64) Doorbell bell;
};

enum class RecordKind : std::uint32_t {
    Frame = 1, // a frame, whole
    Begin = 3, // a streamed frame starts (its sizes); Part records carry its data
    Part = 4,  // the next bytes of the streamed frame
};

class ShmRing {
  public:
    ShmRing(RingControl* control, char* data, std::size_t capacity)
        : control_(control), data_(data), capacity_(capacity) {}

    // Bytes a frame's record takes (header, sizes, bytes, buffers, padding).
    static std::size_t record_size(const Frame& frame);
    // Bytes of a frame's stream: its bytes and its buffers.
    static std::size_t stream_size(const Frame& frame);
    // Writes a Frame (or Begin) record if it fits now; false (nothing written) if not.
    bool try_write(const Frame& frame);
    bool try_write_begin(const Frame& frame);
    // Writes a Part record of the stream's bytes from `offset`, at most `most` of them, if
    // there is room for a part worth writing; returns how many bytes it wrote (0: none).
    std::size_t try_write_part(const Frame& frame, std::size_t offset, std::size_t most);
    // The kind of the oldest unread record, if any.
    std::optional<RecordKind> peek() const;
    // Whether a record waits to be read (the reader's side).
    bool unread() const;
    // Reads the oldest record, which must be a Frame record, into fresh memory.
    Frame read_frame();
    // Reads the oldest record, a Begin record: a frame with fresh memory of the sizes it names.
    Frame read_begin();
    // Reads the oldest record, a Part record, into `frame`'s stream at `offset`; returns its
    // length.
    std::size_t read_part(Frame& frame, std::size_t offset);

    RingControl& control() { return *control_; }
    std::size_t capacity() const { return capacity_; }

  private:
    struct RecordHead {
        std::uint32_t kind;
        std::uint32_t buffer_count;
        std::uint64_t frame_length;
    };
    bool has_room(std::size_t bytes, std::uint64_t head) const;
    void publish(std::uint64_t head, bool urgent = true);
    void copy_in(std::uint64_t position, const void* from, std::size_t length);
    void copy_out(std::uint64_t position, void* to, std::size_t length) const;
    RecordHead head_at(std::uint64_t position) const;
    RecordHead take_head(RecordKind kind, std::uint64_t& position) const;
    std::uint64_t write_head(RecordKind kind, const Frame& frame, std::uint64_t position);
    std::vector<std::uint64_t> read_sizes(std::uint32_t count, std::uint64_t& position) const;

    RingControl* control_;
    char* data_;
    std::size_t capacity_; // a multiple of 8
};

// A number that a segment's creator puts in it and names in its offer, so the peer maps only
// the segment offered.
std::uint64_t fresh_nonce();
// The words of a transport control message ("ppmpi-shm 1 host ...").
std::vector<std::string> control_words(const std::string& text);

// A shared-memory segment with two rings: to the worker and to the master. It has no name: it
// is a memfd, which the other process of the same host opens through /proc/<pid>/fd/<fd>
// while the creator keeps that descriptor open, so no process that dies, whenever it dies,
// can leave a segment behind (as a named /dev/shm segment would).
class ShmSegment {
  public:
    // Creates, sizes, reserves and maps a new segment; null (with `why`) if this host cannot.
    static std::unique_ptr<ShmSegment>
    create(std::size_t ring_bytes, std::uint64_t nonce, std::string& why);
    // Maps the segment another process created, found at `path` (its path_for_peer()), if it
    // is a ppmpi segment with this nonce and ring size.
    static std::unique_ptr<ShmSegment>
    attach(const std::string& path, std::size_t ring_bytes, std::uint64_t nonce, std::string& why);
    ~ShmSegment();
    ShmSegment(const ShmSegment&) = delete;
    ShmSegment& operator=(const ShmSegment&) = delete;

    // Where a process of this host opens this segment (while the descriptor is open).
    std::string path_for_peer() const;
    // Closes the descriptor (the mapping stays): once the peer has mapped it, or never will.
    void close_descriptor();
    ShmRing& to_worker() { return *to_worker_; }
    ShmRing& to_master() { return *to_master_; }

  private:
    ShmSegment(int fd, void* base, std::size_t bytes, std::size_t ring_bytes);
    int fd_;
    void* base_;
    std::size_t bytes_;
    std::optional<ShmRing> to_worker_;
    std::optional<ShmRing> to_master_;
};

}  // namespace ppmpi
