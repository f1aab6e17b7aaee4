#include "ppmpi/transport/shm_ring.hpp"

#include "ppmpi/core/errors.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <random>
#include <sstream>
#include <cstring>
#include <fcntl.h>
#include <new>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

namespace ppmpi {
namespace {

constexpr std::uint64_t kMagic = 0x70706d7069726e67; // "ppmpirng"
constexpr std::size_t kHeadBytes = 64;               // SegmentHead, padded

struct SegmentHead {
    std::uint64_t magic;
    std::uint64_t nonce;
    std::uint64_t ring_bytes;
};

std::size_t pad8(std::size_t n) {
    return (n + 7) & ~std::size_t{7};
}

// Byte layout: SegmentHead, then per ring (to the worker, to the master) its RingControl and
// its data.
std::size_t ring_offset(std::size_t ring_bytes, int which) {
    return kHeadBytes + static_cast<std::size_t>(which) * (sizeof(RingControl) + ring_bytes);
}
std::size_t segment_bytes(std::size_t ring_bytes) {
    return ring_offset(ring_bytes, 2);
}

std::string errno_text(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

// Calls copy(piece, n) for each piece of a frame's stream (its bytes, then its buffers) that
// overlaps [offset, offset + length), `piece` pointing at the first byte of it in range.
template <class AFrame, class Copy>
void visit_stream(AFrame& frame, std::size_t offset, std::size_t length, Copy copy) {
    auto visit = [&](auto* data, std::size_t size) {
        if (length == 0) return;
        if (offset >= size) {
            offset -= size;
            return;
        }
        std::size_t n = std::min(length, size - offset);
        copy(data + offset, n);
        offset = 0;
        length -= n;
    };
    visit(frame.bytes.data(), frame.bytes.size());
    for (auto& buffer : frame.buffers)
        visit(buffer.data, buffer.size);
}

}  // namespace

std::size_t ShmRing::stream_size(const Frame& frame) {
    std::size_t size = frame.bytes.size();
    for (const Buffer& b : frame.buffers)
        size += b.size;
    return size;
}

std::size_t ShmRing::record_size(const Frame& frame) {
    return pad8(sizeof(RecordHead) + 8 * frame.buffers.size() + stream_size(frame));
}

bool ShmRing::has_room(std::size_t bytes, std::uint64_t head) const {
    std::uint64_t tail = control_->tail.load(std::memory_order_acquire);
    return bytes <= capacity_ - (head - tail);
}

void ShmRing::copy_in(std::uint64_t position, const void* from, std::size_t length) {
    std::size_t offset = position % capacity_;
    std::size_t first = std::min(length, capacity_ - offset);
    std::memcpy(data_ + offset, from, first);
    std::memcpy(data_, static_cast<const char*>(from) + first, length - first);
}

void ShmRing::copy_out(std::uint64_t position, void* to, std::size_t length) const {
    std::size_t offset = position % capacity_;
    std::size_t first = std::min(length, capacity_ - offset);
    std::memcpy(to, data_ + offset, first);
    std::memcpy(static_cast<char*>(to) + first, data_, length - first);
}

// The head and buffer sizes of a Frame or Begin record; returns the position after them.
std::uint64_t ShmRing::write_head(RecordKind kind, const Frame& frame, std::uint64_t position) {
    RecordHead record{static_cast<std::uint32_t>(kind),
                      static_cast<std::uint32_t>(frame.buffers.size()), frame.bytes.size()};
    copy_in(position, &record, sizeof record);
    position += sizeof record;
    for (const Buffer& b : frame.buffers) {
        std::uint64_t buffer_size = b.size;
        copy_in(position, &buffer_size, sizeof buffer_size);
        position += sizeof buffer_size;
    }
    return position;
}

// The record up to `head` becomes visible to the reader, which is woken if it dozes (and, for
// a record that is not urgent, waits for more than urgent ones: doorbell.hpp, step 4).
void ShmRing::publish(std::uint64_t head, bool urgent) {
    control_->head.store(head, std::memory_order_release);
    ring(control_->bell, urgent);
}

bool ShmRing::unread() const {
    return control_->head.load(std::memory_order_acquire) !=
           control_->tail.load(std::memory_order_relaxed);
}

bool ShmRing::try_write(const Frame& frame) {
    std::size_t size = record_size(frame);
    std::uint64_t head = control_->head.load(std::memory_order_relaxed);
    if (!has_room(size, head)) return false;
    std::uint64_t at = write_head(RecordKind::Frame, frame, head);
    visit_stream(frame, 0, stream_size(frame), [&](const char* piece, std::size_t n) {
        copy_in(at, piece, n);
        at += n;
    });
    publish(head + size, frame.urgent);
    return true;
}

bool ShmRing::try_write_begin(const Frame& frame) {
    std::size_t size = pad8(sizeof(RecordHead) + 8 * frame.buffers.size());
    std::uint64_t head = control_->head.load(std::memory_order_relaxed);
    if (!has_room(size, head)) return false;
    write_head(RecordKind::Begin, frame, head);
    publish(head + size);
    return true;
}

std::size_t ShmRing::try_write_part(const Frame& frame, std::size_t offset, std::size_t most) {
    std::uint64_t head = control_->head.load(std::memory_order_relaxed);
    std::uint64_t tail = control_->tail.load(std::memory_order_acquire);
    std::size_t room = capacity_ - static_cast<std::size_t>(head - tail);
    std::size_t left = stream_size(frame) - offset;
    std::size_t length = std::min({most, left, room > sizeof(RecordHead) ?
                                   (room - sizeof(RecordHead)) & ~std::size_t{7} : 0});
    // A sliver of room is not worth a record: wait until the reader frees a sixteenth.
    if (length == 0 || length < std::min(left, capacity_ / 16)) return 0;
    RecordHead record{static_cast<std::uint32_t>(RecordKind::Part), 0, length};
    copy_in(head, &record, sizeof record);
    std::uint64_t at = head + sizeof record;
    visit_stream(frame, offset, length, [&](const char* piece, std::size_t n) {
        copy_in(at, piece, n);
        at += n;
    });
    publish(head + pad8(sizeof record + length));
    return length;
}

ShmRing::RecordHead ShmRing::head_at(std::uint64_t position) const {
    RecordHead record{};
    copy_out(position, &record, sizeof record);
    return record;
}

std::optional<RecordKind> ShmRing::peek() const {
    std::uint64_t tail = control_->tail.load(std::memory_order_relaxed);
    if (control_->head.load(std::memory_order_acquire) == tail) return std::nullopt;
    auto kind = static_cast<RecordKind>(head_at(tail).kind);
    if (kind != RecordKind::Frame && kind != RecordKind::Begin && kind != RecordKind::Part)
        throw ProtocolError("shared-memory ring: unknown record kind " +
                            std::to_string(static_cast<std::uint32_t>(kind)));
    return kind;
}

// The oldest record's head, which must be of `kind`; `position` moves past it.
ShmRing::RecordHead ShmRing::take_head(RecordKind kind, std::uint64_t& position) const {
    position = control_->tail.load(std::memory_order_relaxed);
    RecordHead record = head_at(position);
    PPMPI_ENFORCE(record.kind == static_cast<std::uint32_t>(kind), "reading a record of kind ",
                  record.kind, " as kind ", static_cast<std::uint32_t>(kind));
    position += sizeof record;
    return record;
}

std::vector<std::uint64_t> ShmRing::read_sizes(std::uint32_t count, std::uint64_t& position) const {
    std::vector<std::uint64_t> sizes(count);
    for (std::uint64_t& size : sizes) {
        copy_out(position, &size, sizeof size);
        position += sizeof size;
    }
    return sizes;
}

namespace {
// A frame of fresh memory with these sizes (a streamed frame's parts are copied into it).
Frame allocate_frame(std::uint64_t frame_length, const std::vector<std::uint64_t>& sizes) {
    Frame frame;
    frame.bytes.resize(frame_length);
    for (std::uint64_t size : sizes)
        frame.buffers.push_back(Buffer::allocate(size));
    return frame;
}
}  // namespace

Frame ShmRing::read_frame() {
    std::uint64_t at = 0;
    RecordHead record = take_head(RecordKind::Frame, at);
    std::uint64_t tail = at - sizeof record;
    std::vector<std::uint64_t> sizes = read_sizes(record.buffer_count, at);
    std::size_t size = sizeof record + 8 * sizes.size() + record.frame_length;
    for (std::uint64_t buffer_size : sizes)
        size += buffer_size;
    size = pad8(size);
    if (size > capacity_) throw ProtocolError("shared-memory ring: record larger than ring");
    Frame frame = allocate_frame(record.frame_length, sizes);
    visit_stream(frame, 0, stream_size(frame), [&](char* piece, std::size_t n) {
        copy_out(at, piece, n);
        at += n;
    });
    control_->tail.store(tail + size, std::memory_order_release);
    return frame;
}

Frame ShmRing::read_begin() {
    std::uint64_t at = 0;
    RecordHead record = take_head(RecordKind::Begin, at);
    std::uint64_t tail = at - sizeof record;
    Frame frame = allocate_frame(record.frame_length, read_sizes(record.buffer_count, at));
    control_->tail.store(tail + pad8(at - tail), std::memory_order_release);
    return frame;
}

std::size_t ShmRing::read_part(Frame& frame, std::size_t offset) {
    std::uint64_t at = 0;
    RecordHead record = take_head(RecordKind::Part, at);
    std::uint64_t tail = at - sizeof record;
    std::size_t length = record.frame_length;
    if (length > capacity_ || offset + length > stream_size(frame))
        throw ProtocolError("shared-memory ring: a part beyond the end of its frame");
    visit_stream(frame, offset, length, [&](char* piece, std::size_t n) {
        copy_out(at, piece, n);
        at += n;
    });
    control_->tail.store(tail + pad8(sizeof record + length), std::memory_order_release);
    return length;
}

ShmSegment::ShmSegment(int fd, void* base, std::size_t bytes, std::size_t ring_bytes)
    : fd_(fd), base_(base), bytes_(bytes) {
    auto* at = static_cast<char*>(base);
    for (int which = 0; which < 2; ++which) {
        auto* control = reinterpret_cast<RingControl*>(at + ring_offset(ring_bytes, which));
        char* data = reinterpret_cast<char*>(control) + sizeof(RingControl);
        (which == 0 ? to_worker_ : to_master_).emplace(control, data, ring_bytes);
    }
}

std::unique_ptr<ShmSegment>
ShmSegment::create(std::size_t ring_bytes, std::uint64_t nonce, std::string& why) {
    PPMPI_ENFORCE(ring_bytes % 64 == 0 && ring_bytes > 0, "ring size ", ring_bytes);
    int fd = ::memfd_create("ppmpi-rings", MFD_CLOEXEC);
    if (fd < 0) {
        why = errno_text("memfd_create");
        return nullptr;
    }
    std::size_t bytes = segment_bytes(ring_bytes);
    int rc = ::posix_fallocate(fd, 0, static_cast<off_t>(bytes)); // returns the error number
    void* base =
        rc == 0 ? ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0) : MAP_FAILED;
    if (rc != 0)
        why = std::string("posix_fallocate: ") + std::strerror(rc);
    else if (base == MAP_FAILED)
        why = errno_text("mmap");
    if (base == MAP_FAILED) {
        ::close(fd);
        return nullptr;
    }
    new (base) SegmentHead{kMagic, nonce, ring_bytes};
    std::unique_ptr<ShmSegment> segment(new ShmSegment(fd, base, bytes, ring_bytes));
    for (ShmRing* ring : {&segment->to_worker(), &segment->to_master()})
        new (&ring->control()) RingControl{{0}, {0}, {0}, 0, {}};
    return segment;
}

std::unique_ptr<ShmSegment> ShmSegment::attach(const std::string& path,
                                               std::size_t ring_bytes,
                                               std::uint64_t nonce,
                                               std::string& why) {
    int fd = ::open(path.c_str(), O_RDWR | O_CLOEXEC);
    if (fd < 0) {
        why = errno_text(("open " + path).c_str());
        return nullptr;
    }
    std::size_t bytes = segment_bytes(ring_bytes);
    struct stat info {};
    void* base = MAP_FAILED;
    if (::fstat(fd, &info) != 0)
        why = errno_text("fstat");
    else if (static_cast<std::size_t>(info.st_size) != bytes)
        why = "segment of another size";
    else
        base = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd, 0);
    ::close(fd);
    if (base == MAP_FAILED) {
        if (why.empty()) why = errno_text("mmap");
        return nullptr;
    }
    const auto* head = static_cast<const SegmentHead*>(base);
    if (head->magic != kMagic || head->nonce != nonce || head->ring_bytes != ring_bytes) {
        ::munmap(base, bytes);
        why = "not the segment offered (magic, nonce or size differ)";
        return nullptr;
    }
    return std::unique_ptr<ShmSegment>(new ShmSegment(-1, base, bytes, ring_bytes));
}

ShmSegment::~ShmSegment() {
    close_descriptor();
    ::munmap(base_, bytes_);
}

std::string ShmSegment::path_for_peer() const {
    return "/proc/" + std::to_string(::getpid()) + "/fd/" + std::to_string(fd_);
}

void ShmSegment::close_descriptor() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

std::uint64_t fresh_nonce() {
    std::random_device device;
    auto ticks = std::chrono::steady_clock::now().time_since_epoch().count();
    return (std::uint64_t{device()} << 32) ^ device() ^ static_cast<std::uint64_t>(ticks);
}

std::vector<std::string> control_words(const std::string& text) {
    std::istringstream in(text);
    std::vector<std::string> words;
    for (std::string word; in >> word;) words.push_back(word);
    return words;
}

}  // namespace ppmpi
