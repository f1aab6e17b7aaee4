// ppmpi/link/link_stream.hpp: one authenticated connection between a client and a ppmpi-server,
// after the handshake (handshake.hpp), on a non-blocking TCP socket: what goes over it and how.
//
// A server's workers are *slots* of the client's dispatcher: each speaks protocol.hpp with the
// client as a worker does with its master, through the server (link_relay.hpp), which runs the
// slot's tasks on its own pool and never unpickles what a client sends. Every message is one
// sealed frame (sealed_frames.hpp), in order (C = client, LinkTransport; S = server, LinkRelay):
//  1. S→C Info{workers, pid, host}: the first frame. (Another link version never gets here:
//     the handshake names both versions.)
//  2. S→C Slot{s, Hello{pid 0, host}} for each of its workers: the client adopts slot s as a
//     worker of the pool that attached the link (pid 0: nobody judges or kills it by pid).
//  3. C→S Slot{s, protocol.hpp messages}: Welcome, FunctionDef, Task, Withdraw, Heartbeat,
//     Shutdown, each frame as the dispatcher encoded it, its buffers right after (their sizes
//     in the Slot message), each in sealed frames of kChunkBytes (the last the rest; an empty
//     one, one empty frame) read where the buffer will stay: a large array is sealed, sent
//     and opened chunk by chunk, so both sides and the wire work on it at once.
//     S: a Task runs on S's pool under S's job limit (-k); Withdraw takes it back if it has not
//     started; Shutdown cancels the slot's jobs (immediate: and offers a new slot, step 2).
//  4. S→C Slot{s, Result | Heartbeat | Goodbye}: a Result carries the worker's pickled outcome
//     as it came (Ok/Error), or Lost (S's worker died running it: the client charges and
//     requeues it, the one retry accounting) or Failed (S's limit: Timeout).
//     S sends each slot a Heartbeat every kBeatInterval.
//  5. Both: Ping when nothing else was sent for kBeatInterval; a link silent for kSilenceLimit
//     ends (S cancels that client's jobs; C's dispatcher loses its slots, their jobs run
//     elsewhere).
//  6. C→S Bye: the client is done; S cancels what is left and closes.
// Nothing here blocks: send_* queue sealed bytes, flush() writes what the socket takes,
// receive() returns a message once it (and its buffers) arrived.
#pragma once

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "ppmpi/core/buffer.hpp"
#include "ppmpi/core/doorbell.hpp"
#include "ppmpi/link/handshake.hpp"
#include "ppmpi/link/sealed_frames.hpp"

namespace ppmpi::link {

constexpr auto kBeatInterval = std::chrono::seconds(1);
constexpr auto kSilenceLimit = std::chrono::seconds(10);
constexpr std::uint32_t kMaxLinkBuffers = 4096;
constexpr std::size_t kChunkBytes = std::size_t{1} << 20;
constexpr std::size_t kMaxLinkBuffer = std::size_t{1} << 36;  // 64 GiB, each

enum class LinkKind : std::uint8_t { Info = 1, Slot = 2, Ping = 3, Bye = 4 };

struct LinkInfo {
    std::uint32_t workers = 0;
    std::int64_t pid = 0;
    std::string host;
};

struct LinkMessage {
    LinkKind kind = LinkKind::Ping;
    LinkInfo info;            // Info
    std::uint32_t slot = 0;   // Slot: the protocol.hpp frame and its buffers
    std::string frame;
    Buffers buffers;
};

class LinkStream {
  public:
    // Takes `fd` (a connected socket; made non-blocking, closed by the destructor).
    LinkStream(int fd, const SessionKeys& keys);
    ~LinkStream();
    LinkStream(const LinkStream&) = delete;
    LinkStream& operator=(const LinkStream&) = delete;

    void send_info(const LinkInfo& info);
    // `owned`: the buffers are this side's to change (sealed where they lie); else copied first.
    void send_slot(std::uint32_t slot, std::string_view frame, const Buffers& buffers, bool owned);
    void send_ping();
    void send_bye();
    // Writes what the socket takes now; LinkError if the connection broke.
    void flush();
    // The next whole message, if one arrived; LinkError/AuthError end the link.
    std::optional<LinkMessage> receive();

    int fd() const { return fd_; }
    bool unsent() const { return !chunks_.empty() || !unsealed_.empty(); }
    bool receiving_large() const { return in_frame_ && into_size_ >= kChunkBytes / 2; }
    // Data in motion: the caller should poll on, not sleep.
    bool busy() const { return unsent() || receiving_large(); }
    // For a doze: adds the socket; false if something waits to be sent (no doze then).
    bool add_fd(std::vector<int>& fds) const {
        if (unsent()) return false;
        fds.push_back(fd_);
        return true;
    }
    Clock::time_point last_sent() const { return last_sent_; }
    Clock::time_point last_received() const { return last_received_; }

  private:
    struct Chunk {  // sealed bytes to write
        const char* data;
        std::size_t size;
        std::shared_ptr<void> owner;
    };
    struct Unsealed {  // a frame sealed when the writing reaches it, in order: a message's
        std::string plain;  // bytes, or a chunk of a buffer (owned: sealed where it lies)
        Buffer source;
        std::size_t offset = 0, size = 0;
        bool owned = false;
        bool chunk = false;
    };
    void queue_message(std::string plain);
    void seal_next();
    void consume(std::size_t sent);
    bool fill();
    bool take(char* into, std::size_t count, std::size_t& got);
    bool read_frame();
    void start_buffer();
    LinkMessage parse(std::string_view plain);

    int fd_;
    FrameSealer sealer_;
    InPlaceOpener opener_;
    std::deque<Unsealed> unsealed_;
    std::deque<Chunk> chunks_;
    std::size_t chunk_bytes_ = 0;  // in chunks_
    std::size_t first_sent_ = 0;   // bytes of chunks_.front() already written
    std::string inbox_;            // received, not yet parsed: inbox_[inbox_at_, inbox_end_)
    std::size_t inbox_at_ = 0, inbox_end_ = 0;
    // The frame being read: its header, where its body goes, its tag.
    char header_[kSealHeaderBytes] = {};
    char tag_[kTagBytes] = {};
    std::size_t header_got_ = 0, into_size_ = 0, into_got_ = 0, tag_got_ = 0;
    char* into_ = nullptr;
    bool in_frame_ = false;
    std::optional<Buffer> body_;          // a message's
    std::optional<LinkMessage> waiting_;  // a Slot message whose buffers are still coming
    std::vector<std::size_t> buffer_sizes_;
    Buffer assembling_;  // the buffer its chunks go into
    std::size_t assembled_ = 0;
    Clock::time_point last_sent_, last_received_;
};

}  // namespace ppmpi::link
