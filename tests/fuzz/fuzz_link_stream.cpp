// libFuzzer: what a peer that knows the keys may send over a link (link_stream.hpp), after the
// seal: the input, cut into pieces (the first byte sets the size), is sealed frame by frame
// and read by a LinkStream, so the messages themselves are fuzzed (kinds, slots, announced
// buffers and their sizes). It may end the link with LinkError; it must not crash, leak, or
// allocate for a size the input did not carry.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/link/link_stream.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    static const std::string key(ppmpi::link::kKeyBytes, 'k');
    std::size_t piece = data[0] % 128 + 1;
    std::string_view bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
    int fds[2];
    if (::socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) return 0;
    ppmpi::link::FrameSealer sealer(key);
    std::string wire;
    for (std::size_t at = 0; at < bytes.size(); at += piece) wire += sealer.seal(bytes.substr(at, piece));
    // At most ~4 KiB of input, well within a socket's buffer: written whole, then closed.
    if (::write(fds[0], wire.data(), wire.size()) != static_cast<ssize_t>(wire.size())) {
        ::close(fds[0]);
        ::close(fds[1]);
        return 0;
    }
    ::close(fds[0]);
    ppmpi::link::LinkStream stream(fds[1], {key, key});
    try {
        while (stream.receive()) {
        }
        stream.receive();  // the closed socket: LinkError
    } catch (const ppmpi::PpmpiError&) {
    }
    return 0;
}
