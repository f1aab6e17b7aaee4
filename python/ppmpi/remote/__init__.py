"""Remote servers (pp's ppservers): the client's and ppmpi-server's halves of the link.

After the TCP connect, everything between the two ends is C++'s: the handshake's protocol and
cryptography (include/ppmpi/link/handshake.hpp, steps 1-6) and the sealed stream the
dispatchers read and write on either side (link/link_stream.hpp, steps 1-6). Python only
connects, accepts, drives the handshake's bytes and hands the socket over. One module per role:

  auth       the handshake over the socket, and the link's errors (both ends)
  servers    the client's server list: Server(ppservers=..., secret=...)'s entries, and the
             ServerLinks that keeps one Connector per server
  client     Connector: the client's side of one link (connect, handshake, hand over, watch)
  discovery  auto-discovery (pp's "*" entries and ppmpi-server -a): Discovery (client) and
             Announcer (server) with their shared socket and messages
  session    ppmpi-server's side of its links: the Hub admits clients, the dispatcher serves
  cli        ppmpi-server's command line (its console script's main)

Only workers unpickle what a client sends: neither this package nor the server's dispatcher
does."""

# The TCP port of both ends (and, with auto-discovery, its UDP port), as pp's.
DEFAULT_PORT = 60000
