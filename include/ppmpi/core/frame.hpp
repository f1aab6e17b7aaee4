// ppmpi/core/frame.hpp: the frames that carry protocol messages (protocol.hpp).
//
// Every MPI message is one frame of one or more messages (a deep queue costs one MPI message
// per worker per dispatcher step). Layout: u32 count, then per message: u32 header_len,
// u64 payload_len, u32 buffer_count, u64 size of each buffer, header, payload. A header starts
// with its Kind byte. A frame's buffers are those of its messages, in order.
#pragma once

#include "ppmpi/core/protocol.hpp"

#include <string_view>
#include <vector>

namespace ppmpi {

struct Message {
    Header header;
    Bytes payload;
    Buffers buffers = {};
};
struct Frame { // what one MPI message carries (the bytes), then its buffers
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

} // namespace ppmpi
