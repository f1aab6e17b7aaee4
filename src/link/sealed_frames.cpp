#include "ppmpi/link/sealed_frames.hpp"

#include <algorithm>

#include "ppmpi/core/errors.hpp"

namespace ppmpi::link {

namespace {

constexpr std::size_t kFirstReserve = std::size_t{1} << 20;  // grows with what arrives

Bytes iv_for(std::uint64_t counter) {
    Bytes iv(kIvBytes, '\0');
    for (int i = 0; i < 8; ++i)
        iv[kIvBytes - 1 - i] = static_cast<char>((counter >> (8 * i)) & 0xff);
    return iv;
}

std::array<char, kSealHeaderBytes> header_for(std::size_t size) {
    std::array<char, kSealHeaderBytes> header{};
    for (int i = 0; i < 4; ++i) header[3 - i] = static_cast<char>((size >> (8 * i)) & 0xff);
    return header;
}

std::size_t size_in(std::string_view header) {
    std::size_t size = 0;
    for (char c : header) size = (size << 8) | static_cast<unsigned char>(c);
    return size;
}

}  // namespace

FrameSealer::FrameSealer(Bytes key) : key_(std::move(key)) {
    PPMPI_ENFORCE(key_.size() == kKeyBytes, "a link key of ", kKeyBytes, " bytes");
}

FrameSealer::Wrapping FrameSealer::seal_in_place(char* data, std::size_t size,
                                                 const char* from) {
    if (size > kMaxSealedBody)
        throw LinkError("a frame of " + std::to_string(size) + " bytes exceeds the link's " +
                        std::to_string(kMaxSealedBody) + "-byte bound");
    PPMPI_ENFORCE(counter_ != UINT64_MAX, "link frame counter exhausted");
    Wrapping out{header_for(size), {}};
    std::string_view aad(out.header.data(), out.header.size());
    link::seal_in_place(key_, iv_for(counter_++), aad, data, size, out.tag.data(), from);
    return out;
}

Bytes FrameSealer::seal(std::string_view plain) {
    Bytes frame(kSealHeaderBytes + plain.size() + kTagBytes, '\0');
    std::copy(plain.begin(), plain.end(), frame.begin() + kSealHeaderBytes);
    Wrapping wrap = seal_in_place(frame.data() + kSealHeaderBytes, plain.size());
    std::copy(wrap.header.begin(), wrap.header.end(), frame.begin());
    std::copy(wrap.tag.begin(), wrap.tag.end(), frame.end() - kTagBytes);
    return frame;
}

InPlaceOpener::InPlaceOpener(Bytes key) : key_(std::move(key)) {
    PPMPI_ENFORCE(key_.size() == kKeyBytes, "a link key of ", kKeyBytes, " bytes");
}

std::size_t InPlaceOpener::body_size(std::string_view header, std::size_t max_body) {
    PPMPI_ENFORCE(header.size() == kSealHeaderBytes, "a sealed frame's header is 4 bytes");
    std::size_t size = size_in(header);
    if (size > std::min(max_body, kMaxSealedBody))
        throw LinkError("a frame of " + std::to_string(size) + " bytes exceeds the bound of " +
                        std::to_string(std::min(max_body, kMaxSealedBody)));
    return size;
}

void InPlaceOpener::open(std::string_view header, char* data, std::size_t size,
                         const char* tag) {
    if (size_in(header) != size || !link::open_in_place(key_, iv_for(counter_), header, data,
                                                        size, tag))
        throw AuthError("a frame failed its authentication (forged, altered, replayed or out "
                        "of order)");
    ++counter_;
}

FrameOpener::FrameOpener(Bytes key, std::size_t max_body)
    : opener_(std::move(key)), max_body_(std::min(max_body, kMaxSealedBody)) {}

// Any error ends the link: a stream cut at an unknown place cannot be read on.
void FrameOpener::feed(std::string_view bytes) {
    if (broken_) throw LinkError("the link ended after a bad frame");
    try {
        read(bytes);
    } catch (...) {
        broken_ = true;
        throw;
    }
}

void FrameOpener::read(std::string_view bytes) {
    while (!bytes.empty()) {
        if (!body_size_) {
            std::size_t part = std::min(kSealHeaderBytes - header_.size(), bytes.size());
            header_.append(bytes.substr(0, part));
            bytes.remove_prefix(part);
            if (header_.size() < kSealHeaderBytes) return;
            std::size_t size = InPlaceOpener::body_size(header_, max_body_);
            body_size_ = size;
            body_.reserve(std::min(size + kTagBytes, kFirstReserve));
        }
        std::size_t part = std::min(*body_size_ + kTagBytes - body_.size(), bytes.size());
        body_.append(bytes.substr(0, part));
        bytes.remove_prefix(part);
        if (body_.size() == *body_size_ + kTagBytes) open_current();
    }
}

void FrameOpener::open_current() {
    std::size_t size = *body_size_;
    opener_.open(header_, body_.data(), size, body_.data() + size);
    body_.resize(size);
    ready_.push_back(std::move(body_));
    body_ = Bytes();
    header_.clear();
    body_size_.reset();
}

std::optional<Bytes> FrameOpener::next() {
    if (ready_.empty()) return std::nullopt;
    Bytes out = std::move(ready_.front());
    ready_.pop_front();
    return out;
}

}  // namespace ppmpi::link
