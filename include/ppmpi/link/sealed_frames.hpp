// ppmpi/link/sealed_frames.hpp: every frame after the handshake (handshake.hpp), encrypted and
// authenticated with AES-256-GCM under that direction's key.
//
// A sealed frame: [u32 big-endian body length][body: the plaintext encrypted][16-byte tag].
//  1. The sender numbers its frames 0, 1, 2, ...; frame n's 96-bit IV is 4 zero bytes + n as a
//     big-endian u64. Each direction has its own key, so a (key, IV) pair is never used twice.
//  2. The length is authenticated with the body (GCM's additional data).
//  3. The receiver expects frame n next: a frame replayed, reordered, altered, cut short or
//     sealed for another connection fails its tag, and the link ends with AuthError.
//  4. A length above the receiver's bound ends the link (LinkError) before anything is
//     allocated for it.
// Large payloads are sealed and opened where they lie (seal_in_place), never copied for it.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <string_view>

#include "ppmpi/link/crypto.hpp"

namespace ppmpi::link {

constexpr std::size_t kSealHeaderBytes = 4;
constexpr std::size_t kMaxSealedBody = 0x7fffffff;  // one MPI message on the server's side

class FrameSealer {
  public:
    explicit FrameSealer(Bytes key);

    struct Wrapping {  // what goes on the wire before and after a body sealed in place
        std::array<char, kSealHeaderBytes> header;
        std::array<char, kTagBytes> tag;
    };
    // Encrypts data[0, size) where it lies (step 1-2), or from[0, size) into it.
    Wrapping seal_in_place(char* data, std::size_t size, const char* from = nullptr);
    // The whole frame for a small payload.
    Bytes seal(std::string_view plain);
    std::uint64_t sealed() const { return counter_; }

  private:
    Bytes key_;
    std::uint64_t counter_ = 0;
};

// Opens frames read by the caller into memory of its own (a large array's), in order.
class InPlaceOpener {
  public:
    explicit InPlaceOpener(Bytes key);
    // The body size a header announces; LinkError above `max_body` (step 4).
    static std::size_t body_size(std::string_view header, std::size_t max_body);
    // Decrypts data[0, size) where it lies; AuthError if the tag does not match (step 3).
    void open(std::string_view header, char* data, std::size_t size, const char* tag);
    std::uint64_t opened() const { return counter_; }

  private:
    Bytes key_;
    std::uint64_t counter_ = 0;
};

// Opens frames from bytes fed in any pieces (a stream).
class FrameOpener {
  public:
    FrameOpener(Bytes key, std::size_t max_body);

    // Feeds received bytes; every frame they complete is opened (steps 3-4). Throws AuthError
    // or LinkError; after that the opener is broken and refuses everything.
    void feed(std::string_view bytes);
    // The next opened frame's plaintext, oldest first.
    std::optional<Bytes> next();
    std::uint64_t opened() const { return opener_.opened(); }

  private:
    void read(std::string_view bytes);
    void open_current();

    InPlaceOpener opener_;
    std::size_t max_body_;
    Bytes header_;
    std::optional<std::size_t> body_size_;  // known once the header is in
    Bytes body_;                            // body, then tag
    std::deque<Bytes> ready_;
    bool broken_ = false;
};

}  // namespace ppmpi::link
