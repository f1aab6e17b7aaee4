"""Auto-discovery, as pp's: ppmpi-servers started with -a announce themselves, and clients
with a "*" entry in ppservers ask for them, over UDP on the service's port number.

Both ends use one kind of socket (discovery_socket) and two messages: a client sends
ANNOUNCE_ASK (pp's b"C") to the broadcast address; a server answers with ANNOUNCE + its port
at once, and announces itself every ANNOUNCE_INTERVAL_S. An announcement proves nothing: a
found server is connected like a named one, and must prove the secret (auth)."""
import logging
import socket
import threading
import time

log = logging.getLogger("ppmpi")
server_log = logging.getLogger("ppmpi.server")  # ppmpi-server's own log (cli.py)

ANNOUNCE_ASK, ANNOUNCE = b"ppmpi?C", b"ppmpi!S"
ANNOUNCE_INTERVAL_S = 10.0
DISCOVERY_WAIT_S = 5.0  # Server(ncpus=0, ppservers=("*",)) waits this long for an answer


def discovery_socket(port):
    """The UDP socket of either end: on every interface (a socket bound to one address does
    not receive broadcasts), allowed to broadcast, reads bounded to 1 s."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
    try:
        sock.bind(("", port))
    except OSError as exc:
        sock.close()
        raise OSError(f"auto-discovery cannot listen on UDP port {port}: "
                      f"{exc.strerror or exc}") from None
    sock.settimeout(1.0)
    return sock


class Discovery:
    """The client's end: asks on the broadcast address, then listens for announcements while
    the Server lives, and hands each server found to `links` (servers.ServerLinks)."""

    def __init__(self, links, broadcast, port):
        self._links, self._broadcast, self._port = links, broadcast, port
        self._sock = discovery_socket(port)
        self.thread = threading.Thread(target=self._run, name="ppmpi-discovery", daemon=True)

    def _run(self):
        asked = 0.0
        while not self._links.closing.is_set():
            if time.monotonic() - asked > ANNOUNCE_INTERVAL_S:
                try:
                    self._sock.sendto(ANNOUNCE_ASK, (self._broadcast, self._port))
                except OSError as exc:
                    log.warning("ppmpi: auto-discovery cannot broadcast to %s:%d: %s",
                                self._broadcast, self._port, exc)
                asked = time.monotonic()
            try:
                data, (host, _port) = self._sock.recvfrom(64)
            except (socket.timeout, OSError):
                continue
            if data.startswith(ANNOUNCE) and data[len(ANNOUNCE):].isdigit():
                self._links.add_server(host, int(data[len(ANNOUNCE):]))

    def close(self):
        if self.thread.is_alive():
            self.thread.join(2.0)
        self._sock.close()


class Announcer:
    """The server's end (ppmpi-server -a): announces this server on the broadcast address
    every ANNOUNCE_INTERVAL_S and answers a client's question at once (pp's Discover)."""

    def __init__(self, broadcast, port):
        self._target, self._port = (broadcast, port), port
        self._stop = threading.Event()
        self._sock = discovery_socket(port)
        self._thread = threading.Thread(target=self._run, name="ppmpi-announcer", daemon=True)
        self._thread.start()

    def _announce(self):
        try:
            self._sock.sendto(ANNOUNCE + str(self._port).encode(), self._target)
        except OSError as exc:
            server_log.warning("auto-discovery cannot broadcast to %s:%d: %s", *self._target,
                               exc)

    def _run(self):
        last = 0.0
        while not self._stop.is_set():
            if time.monotonic() - last >= ANNOUNCE_INTERVAL_S:
                self._announce()
                last = time.monotonic()
            try:
                data, peer = self._sock.recvfrom(64)
            except (socket.timeout, OSError):
                continue
            if data == ANNOUNCE_ASK:
                server_log.debug("auto-discovery: asked by %s", peer[0])
                self._announce()

    def close(self):
        self._stop.set()
        self._thread.join(2.0)
        self._sock.close()
