// ppmpi/link/peer_host.hpp: whether a connected socket's other end runs on this host.
//
// A ppmpi-server spins for the next job of a client on another host; for one on this host only
// while that client waits for its one job: it shares this host's cores, and a spinning server
// takes one from the client's own master and workers (LinkRelay::last_spin_cue).
#pragma once

#include <sys/socket.h>

namespace ppmpi::link {

// The two ends of a connected socket are on this host: both loopback addresses, or the same
// address (one of this host's own). False if either address cannot be read.
bool peer_on_this_host(int fd);

// The same for two addresses (AF_INET, AF_INET6 and IPv4-mapped IPv6; AF_UNIX: always true).
bool same_host(const sockaddr_storage& local, const sockaddr_storage& peer);

}  // namespace ppmpi::link
