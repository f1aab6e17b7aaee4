// libFuzzer: decode_frame (protocol.hpp) on arbitrary bytes, as a malicious or broken peer would
// send them. It may refuse with ProtocolError; it must not crash, leak or allocate past the
// frame (libFuzzer's -malloc_limit_mb, run_fuzz.sh).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/protocol.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    try {
        auto messages =
            ppmpi::decode_frame(std::string_view(reinterpret_cast<const char*>(data), size));
        for (const auto& message : messages) (void)ppmpi::kind_of(message.header);
    } catch (const ppmpi::ProtocolError&) {
    }
    return 0;
}
