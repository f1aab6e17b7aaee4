// libFuzzer: the link's frame opener (sealed_frames.hpp) fed arbitrary bytes in arbitrary
// pieces (the first byte sets the piece size). It may end the link with LinkError or AuthError;
// it must not crash, leak, or allocate for a length above its bound.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/link/sealed_frames.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    static const std::string key(ppmpi::link::kKeyBytes, 'k');
    std::size_t piece = data[0] % 64 + 1;
    std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    ppmpi::link::FrameOpener opener(key, 4096);
    try {
        for (std::size_t at = 0; at < bytes.size(); at += piece) {
            opener.feed(bytes.substr(at, piece));
            while (opener.next()) {
            }
        }
    } catch (const ppmpi::LinkError&) {
    }
    return 0;
}
