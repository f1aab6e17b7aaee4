#include "ppmpi/link/link_stream.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/uio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ppmpi/core/errors.hpp"

namespace ppmpi::link {

namespace {

constexpr std::size_t kInboxBytes = 64 * 1024;  // smaller frames are read through it
constexpr int kMaxIovecs = 64;

void put(std::string& out, std::uint64_t value, int bytes) {
    for (int i = bytes - 1; i >= 0; --i) out.push_back(static_cast<char>((value >> (8 * i)) & 0xff));
}

// Reads big-endian fields from a message, refusing to read past its end.
struct Cursor {
    std::string_view data;
    std::uint64_t get(int bytes) {
        if (data.size() < static_cast<std::size_t>(bytes))
            throw LinkError("a link message shorter than its fields");
        std::uint64_t value = 0;
        for (int i = 0; i < bytes; ++i) value = (value << 8) | static_cast<unsigned char>(data[i]);
        data.remove_prefix(bytes);
        return value;
    }
};

std::string system_error(const char* what) {
    return std::string(what) + ": " + std::strerror(errno);
}

}  // namespace

LinkStream::LinkStream(int fd, const SessionKeys& keys)
    : fd_(fd), sealer_(keys.send), opener_(keys.receive), inbox_(kInboxBytes, '\0'),
      last_sent_(Clock::now()), last_received_(Clock::now()) {
    int flags = ::fcntl(fd_, F_GETFL, 0);
    ::fcntl(fd_, F_SETFL, flags | O_NONBLOCK);
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
}

LinkStream::~LinkStream() {
    ::shutdown(fd_, SHUT_RDWR);
    ::close(fd_);
}

// Sealing waits for the writing: a large buffer's chunks are sealed while earlier ones travel.
// Frames are sealed strictly in queue order, which numbers them (sealed_frames.hpp step 1).
void LinkStream::seal_next() {
    Unsealed next = std::move(unsealed_.front());
    unsealed_.pop_front();
    if (!next.chunk) {
        auto frame = std::make_shared<Bytes>(sealer_.seal(next.plain));
        chunks_.push_back(Chunk{frame->data(), frame->size(), frame});
        chunk_bytes_ += frame->size();
        return;
    }
    Buffer target = next.source;
    const char* from = nullptr;
    if (!next.owned) {  // the sender's memory (a job's arguments, kept to send again)
        target = Buffer::allocate(next.size);
        from = next.source.data + next.offset;
        next.offset = 0;
    }
    char* data = target.data + next.offset;
    auto wrap = std::make_shared<FrameSealer::Wrapping>(sealer_.seal_in_place(data, next.size, from));
    chunks_.push_back(Chunk{wrap->header.data(), wrap->header.size(), wrap});
    if (next.size > 0) chunks_.push_back(Chunk{data, next.size, target.owner});
    chunks_.push_back(Chunk{wrap->tag.data(), wrap->tag.size(), wrap});
    chunk_bytes_ += kSealHeaderBytes + next.size + kTagBytes;
}

void LinkStream::queue_message(std::string plain) {
    Unsealed message;
    message.plain = std::move(plain);
    unsealed_.push_back(std::move(message));
}

void LinkStream::send_info(const LinkInfo& info) {
    std::string plain(1, static_cast<char>(LinkKind::Info));
    put(plain, info.workers, 4);
    put(plain, static_cast<std::uint64_t>(info.pid), 8);
    plain += info.host;
    queue_message(std::move(plain));
}

void LinkStream::send_slot(std::uint32_t slot, std::string_view frame, const Buffers& buffers,
                           bool owned) {
    PPMPI_ENFORCE(buffers.size() <= kMaxLinkBuffers, "at most ", kMaxLinkBuffers, " buffers");
    std::string plain(1, static_cast<char>(LinkKind::Slot));
    put(plain, slot, 4);
    put(plain, buffers.size(), 4);
    for (const Buffer& buffer : buffers) put(plain, buffer.size, 8);
    plain.append(frame);
    queue_message(std::move(plain));
    for (const Buffer& buffer : buffers) {
        std::size_t offset = 0;
        do {  // an empty buffer: one empty frame
            std::size_t size = std::min(kChunkBytes, buffer.size - offset);
            unsealed_.push_back(Unsealed{{}, buffer, offset, size, owned, true});
            offset += size;
        } while (offset < buffer.size);
    }
}

void LinkStream::send_ping() {
    queue_message(std::string(1, static_cast<char>(LinkKind::Ping)));
}
void LinkStream::send_bye() {
    queue_message(std::string(1, static_cast<char>(LinkKind::Bye)));
}

// Seals ahead of the writing by at most kSealAhead bytes (the socket takes ~2-4 MiB at once).
void LinkStream::flush() {
    constexpr std::size_t kSealAhead = 2 * kChunkBytes;
    for (;;) {
        while (chunk_bytes_ < kSealAhead && !unsealed_.empty()) seal_next();
        if (chunks_.empty()) return;
        iovec vectors[kMaxIovecs];
        int count = 0;
        for (auto it = chunks_.begin(); it != chunks_.end() && count < kMaxIovecs; ++it, ++count) {
            std::size_t skip = count == 0 ? first_sent_ : 0;
            vectors[count].iov_base = const_cast<char*>(it->data + skip);
            vectors[count].iov_len = it->size - skip;
        }
        msghdr message{};
        message.msg_iov = vectors;
        message.msg_iovlen = static_cast<std::size_t>(count);
        ssize_t sent = ::sendmsg(fd_, &message, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (sent < 0) {
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return;
            throw LinkError(system_error("connection lost while sending"));
        }
        last_sent_ = Clock::now();
        consume(static_cast<std::size_t>(sent));
    }
}

void LinkStream::consume(std::size_t sent) {
    chunk_bytes_ -= sent;
    while (!chunks_.empty() && sent >= chunks_.front().size - first_sent_) {
        sent -= chunks_.front().size - first_sent_;
        chunks_.pop_front();
        first_sent_ = 0;
    }
    first_sent_ += sent;
}

// More received bytes into the inbox; false if none are there now.
bool LinkStream::fill() {
    if (inbox_at_ == inbox_end_) inbox_at_ = inbox_end_ = 0;
    for (;;) {
        ssize_t got = ::recv(fd_, inbox_.data() + inbox_end_, inbox_.size() - inbox_end_,
                             MSG_DONTWAIT);
        if (got > 0) {
            inbox_end_ += static_cast<std::size_t>(got);
            return true;
        }
        if (got == 0) throw LinkError("the peer closed the connection");
        if (errno == EINTR) continue;
        if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
        throw LinkError(system_error("connection lost while reading"));
    }
}

// Moves received bytes into into[got, count): from the inbox, or for a large rest straight
// from the socket (a large array is read where it will stay). True once all are in.
bool LinkStream::take(char* into, std::size_t count, std::size_t& got) {
    while (got < count) {
        if (inbox_at_ < inbox_end_) {
            std::size_t part = std::min(count - got, inbox_end_ - inbox_at_);
            std::memcpy(into + got, inbox_.data() + inbox_at_, part);
            inbox_at_ += part;
            got += part;
            continue;
        }
        if (count - got >= kInboxBytes) {
            ssize_t n = ::recv(fd_, into + got, count - got, MSG_DONTWAIT);
            if (n > 0) {
                got += static_cast<std::size_t>(n);
                continue;
            }
            if (n == 0) throw LinkError("the peer closed the connection");
            if (errno == EINTR) continue;
            if (errno == EAGAIN || errno == EWOULDBLOCK) return false;
            throw LinkError(system_error("connection lost while reading"));
        }
        if (!fill()) return false;
    }
    return true;
}

// The next sealed frame, read where it belongs (a message's own memory, or its place in the
// buffer being assembled) and opened there; false until all of it is in.
bool LinkStream::read_frame() {
    if (!in_frame_) {
        if (!take(header_, kSealHeaderBytes, header_got_)) return false;
        std::size_t size = InPlaceOpener::body_size({header_, kSealHeaderBytes}, kMaxSealedBody);
        if (waiting_) {
            std::size_t expected = std::min(kChunkBytes, assembling_.size - assembled_);
            if (size != expected)
                throw LinkError("a buffer's chunk of " + std::to_string(size) + " bytes where " +
                                std::to_string(expected) + " were due");
            into_ = assembling_.data + assembled_;
        } else {
            body_ = Buffer::allocate(size);
            into_ = body_->data;
        }
        into_size_ = size;
        into_got_ = tag_got_ = 0;
        in_frame_ = true;
    }
    if (!take(into_, into_size_, into_got_) || !take(tag_, kTagBytes, tag_got_)) return false;
    opener_.open({header_, kSealHeaderBytes}, into_, into_size_, tag_);
    in_frame_ = false;
    header_got_ = 0;
    return true;
}

void LinkStream::start_buffer() {
    std::size_t size = buffer_sizes_[waiting_->buffers.size()];
    try {
        assembling_ = Buffer::allocate(size);
    } catch (const std::bad_alloc&) {
        throw LinkError("no memory for a buffer of " + std::to_string(size) + " bytes");
    }
    assembled_ = 0;
}

std::optional<LinkMessage> LinkStream::receive() {
    for (;;) {
        if (!read_frame()) return std::nullopt;
        last_received_ = Clock::now();
        if (waiting_) {
            assembled_ += into_size_;
            if (assembled_ < assembling_.size) continue;
            waiting_->buffers.push_back(std::move(assembling_));
            if (waiting_->buffers.size() < buffer_sizes_.size()) {
                start_buffer();
                continue;
            }
            std::optional<LinkMessage> done = std::move(waiting_);
            waiting_.reset();
            return done;
        }
        LinkMessage message = parse(body_->view());
        body_.reset();
        if (message.kind == LinkKind::Slot && !buffer_sizes_.empty()) {
            waiting_ = std::move(message);
            start_buffer();
            continue;
        }
        return message;
    }
}

LinkMessage LinkStream::parse(std::string_view plain) {
    Cursor at{plain};
    LinkMessage message;
    auto kind = static_cast<LinkKind>(at.get(1));
    message.kind = kind;
    buffer_sizes_.clear();
    if (kind == LinkKind::Info) {
        message.info.workers = static_cast<std::uint32_t>(at.get(4));
        message.info.pid = static_cast<std::int64_t>(at.get(8));
        message.info.host = std::string(at.data);
    } else if (kind == LinkKind::Slot) {
        message.slot = static_cast<std::uint32_t>(at.get(4));
        auto count = at.get(4);
        if (count > kMaxLinkBuffers)
            throw LinkError("a link message announces " + std::to_string(count) + " buffers");
        for (std::uint64_t i = 0; i < count; ++i) {
            buffer_sizes_.push_back(at.get(8));
            if (buffer_sizes_.back() > kMaxLinkBuffer)
                throw LinkError("a link message announces a buffer of " +
                                std::to_string(buffer_sizes_.back()) + " bytes");
        }
        message.frame = std::string(at.data);
    } else if (kind != LinkKind::Ping && kind != LinkKind::Bye) {
        throw LinkError("unknown link message kind " + std::to_string(static_cast<int>(kind)));
    }
    return message;
}

}  // namespace ppmpi::link
