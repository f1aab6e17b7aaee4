// Whether a link's client runs on the server's host (link/peer_host.hpp): addresses compared
// by hand, then real sockets on loopback.
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <string>

#include "ppmpi/link/peer_host.hpp"

using ppmpi::link::peer_on_this_host;
using ppmpi::link::same_host;

namespace {

sockaddr_storage address(const std::string& ip) {
    sockaddr_storage out{};
    if (ip.find(':') == std::string::npos) {
        auto& in4 = reinterpret_cast<sockaddr_in&>(out);
        in4.sin_family = AF_INET;
        REQUIRE(::inet_pton(AF_INET, ip.c_str(), &in4.sin_addr) == 1);
    } else {
        auto& in6 = reinterpret_cast<sockaddr_in6&>(out);
        in6.sin6_family = AF_INET6;
        REQUIRE(::inet_pton(AF_INET6, ip.c_str(), &in6.sin6_addr) == 1);
    }
    return out;
}

bool same(const std::string& a, const std::string& b) {
    return same_host(address(a), address(b));
}

}  // namespace

TEST_CASE("same_host: one address, or loopback at both ends", "[link]") {
    CHECK(same("10.1.2.3", "10.1.2.3"));
    CHECK(same("127.0.0.1", "127.0.0.2"));  // all of 127/8 is this host
    CHECK(same("::1", "127.0.0.1"));
    CHECK(same("::ffff:10.1.2.3", "10.1.2.3"));  // IPv4-mapped, as a dual-stack listener sees it
    CHECK(same("fd00::7", "fd00::7"));
    CHECK_FALSE(same("10.1.2.3", "10.1.2.4"));
    CHECK_FALSE(same("127.0.0.1", "10.1.2.3"));
    CHECK_FALSE(same("::1", "fd00::7"));
    CHECK_FALSE(same("::ffff:10.1.2.3", "10.1.2.4"));
    sockaddr_storage unknown{};
    unknown.ss_family = AF_UNSPEC;
    CHECK_FALSE(same_host(unknown, address("127.0.0.1")));
}

TEST_CASE("peer_on_this_host: a loopback connection and a socket pair are here", "[link]") {
    int listener = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(listener >= 0);
    sockaddr_in at{};
    at.sin_family = AF_INET;
    at.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::bind(listener, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
    REQUIRE(::listen(listener, 1) == 0);
    socklen_t size = sizeof at;
    REQUIRE(::getsockname(listener, reinterpret_cast<sockaddr*>(&at), &size) == 0);
    int client = ::socket(AF_INET, SOCK_STREAM, 0);
    REQUIRE(::connect(client, reinterpret_cast<sockaddr*>(&at), sizeof at) == 0);
    int accepted = ::accept(listener, nullptr, nullptr);
    REQUIRE(accepted >= 0);
    CHECK(peer_on_this_host(accepted));
    CHECK(peer_on_this_host(client));
    CHECK_FALSE(peer_on_this_host(listener));  // not connected: no peer
    int pair[2];
    REQUIRE(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair) == 0);
    CHECK(peer_on_this_host(pair[0]));
    CHECK_FALSE(peer_on_this_host(-1));
    for (int fd : {listener, client, accepted, pair[0], pair[1]}) ::close(fd);
}
