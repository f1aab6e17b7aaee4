#include "ppmpi/link/peer_host.hpp"

#include <netinet/in.h>

#include <array>
#include <cstring>
#include <optional>

namespace ppmpi::link {

namespace {

// An IP address as 16 bytes (IPv4 as IPv4-mapped IPv6); none for another family.
std::optional<std::array<unsigned char, 16>> ip_bytes(const sockaddr_storage& address) {
    std::array<unsigned char, 16> out{};
    if (address.ss_family == AF_INET6) {
        const auto& in6 = reinterpret_cast<const sockaddr_in6&>(address);
        std::memcpy(out.data(), &in6.sin6_addr, 16);
        return out;
    }
    if (address.ss_family == AF_INET) {
        const auto& in4 = reinterpret_cast<const sockaddr_in&>(address);
        out[10] = out[11] = 0xff;
        std::memcpy(out.data() + 12, &in4.sin_addr, 4);
        return out;
    }
    return std::nullopt;
}

bool loopback(const std::array<unsigned char, 16>& ip) {
    static constexpr std::array<unsigned char, 16> kIpv6Loopback{0, 0, 0, 0, 0, 0, 0, 0,
                                                                 0, 0, 0, 0, 0, 0, 0, 1};
    static constexpr unsigned char kMapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (ip == kIpv6Loopback) return true;
    return std::memcmp(ip.data(), kMapped, sizeof kMapped) == 0 && ip[12] == 127;  // 127/8
}

}  // namespace

bool same_host(const sockaddr_storage& local, const sockaddr_storage& peer) {
    if (local.ss_family == AF_UNIX && peer.ss_family == AF_UNIX) return true;
    auto a = ip_bytes(local), b = ip_bytes(peer);
    if (!a || !b) return false;
    return *a == *b || (loopback(*a) && loopback(*b));
}

bool peer_on_this_host(int fd) {
    sockaddr_storage local{}, peer{};
    socklen_t local_size = sizeof local, peer_size = sizeof peer;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&local), &local_size) != 0) return false;
    if (::getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &peer_size) != 0) return false;
    return same_host(local, peer);
}

}  // namespace ppmpi::link
