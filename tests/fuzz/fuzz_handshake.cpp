// libFuzzer: the link handshake (handshake.hpp), as client and as server, fed arbitrary bytes
// in arbitrary pieces (the first byte sets the piece size). It may fail (version, secret); it
// must not crash or leak, and never consume anything once it is over.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <string_view>

#include "ppmpi/link/handshake.hpp"

namespace {

void drive(ppmpi::link::Handshake::Role role, std::string_view bytes, std::size_t piece) {
    ppmpi::link::Handshake side(role, "fuzz secret", std::string(ppmpi::link::kNonceBytes, 'n'));
    for (std::size_t at = 0; at < bytes.size(); at += piece) {
        std::string_view part = bytes.substr(at, piece);
        if (side.feed(part) > part.size()) std::abort();
        side.take_output();
        if (side.done() || side.failure() != ppmpi::link::Handshake::Failure::None) {
            if (side.wanted() != 0 || side.feed(part) != 0) std::abort();  // its part is over
            return;
        }
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    std::size_t piece = data[0] % 48 + 1;
    std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    drive(ppmpi::link::Handshake::Role::Client, bytes, piece);
    drive(ppmpi::link::Handshake::Role::Server, bytes, piece);
    return 0;
}
