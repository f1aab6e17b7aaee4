"""Server(ppservers=..., secret=...): the local pool and remote ppmpi-servers as one.

Each server's workers are slots of the Server's own pool in the C++ dispatcher, scheduled by
load beside the local workers (one scheduler, one retry accounting; link_transport.hpp). Here
are only the connectors that bring the links (one per server, named or found by
auto-discovery, _remote.Connector) and the views of them."""
import logging
import socket
import threading
import time

from . import _auth
from ._tunables import CONTROL_TIMEOUT_S
from ._remote import CONNECT_TIMEOUT_S, Connector, parse_address
from .errors import NoWorkers

log = logging.getLogger("ppmpi")

# With jobs waiting and no worker (local or remote) usable this long, they fail with
# NoWorkers instead of waiting for a server that may never come back.
NO_NODE_LIMIT_S = 60.0

# Auto-discovery, as pp's: UDP on the service's port number; a client sends b"C" (here
# ANNOUNCE_ASK) to the broadcast address, servers answer and announce themselves every 10 s.
ANNOUNCE_ASK, ANNOUNCE = b"ppmpi?C", b"ppmpi!S"
ANNOUNCE_INTERVAL_S = 10.0
DISCOVERY_WAIT_S = 5.0  # Server(ncpus=0, ppservers=("*",)) waits this long for an answer


def discovery_socket(port):
    """The UDP socket of either end of auto-discovery: on every interface (a socket bound to
    one address does not receive broadcasts), allowed to broadcast, reads bounded to 1 s."""
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


def discovery_addresses(entry):
    """pp's "*" entries: (broadcast address, port). "*" is the global broadcast on port 60000;
    "10.1.2.*:35000" broadcasts to 10.1.2.255 on port 35000."""
    host, port = parse_address(entry)
    pattern = host if host.count(".") == 3 else "*.*.*.*"
    return pattern.replace("*", "255"), port


class ServerLinks:
    def __init__(self, pool, ppservers, secret):
        self.pool, self.secret = pool, secret
        self.closing = threading.Event()
        self.cond = threading.Condition()
        self.remotes = {}
        self._discoveries = []
        try:  # first what can fail (a UDP port in use), before any thread starts
            for entry in ppservers:
                if "*" in entry:
                    self._discoveries.append(Discovery(self, *discovery_addresses(entry)))
        except OSError:
            for discovery in self._discoveries:
                discovery.close()
            raise
        pool.expect_links(NO_NODE_LIMIT_S, ", ".join(ppservers), CONTROL_TIMEOUT_S)
        for entry in ppservers:
            if "*" not in entry:
                self.add_server(*parse_address(entry))
        for discovery in self._discoveries:
            discovery.thread.start()

    def add_server(self, host, port):
        """Connects to host:port unless a connector for it exists already."""
        with self.cond:
            name = f"{host}:{port}"
            if name in self.remotes or self.closing.is_set():
                return
            node = self.remotes[name] = Connector(self, host, port)
        node.thread.start()

    # -- start-up and views -----------------------------------------------------------------
    def _wait_until(self, settled, bound):
        """Waits (at most bound seconds) until settled(nodes) is true; returns whether it is.
        A connector that connects or fails notifies cond, so this wakes at once."""
        deadline = time.monotonic() + bound
        with self.cond:
            while True:
                if settled(list(self.remotes.values())):
                    return True
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(min(left, 0.05))

    def await_first_attempts(self, bound):
        """Waits (at most bound seconds) until every static server has connected or failed
        once, so that Server()'s first jobs are balanced over the servers too (on a LAN the
        handshake takes milliseconds) and get_active_nodes() shows them."""
        self._wait_until(lambda nodes: all(n.usable or n.reason is not None for n in nodes),
                         bound)

    def require_a_server(self):
        """With ncpus=0: waits (bounded) until a server is usable; raises NoWorkers naming each
        server and why it is not, once every first attempt is over and none is usable."""
        bound = CONNECT_TIMEOUT_S + _auth.HANDSHAKE_TIMEOUT_S + 1.0
        discovery_until = time.monotonic() + (DISCOVERY_WAIT_S if self._discoveries else 0.0)

        def settled(nodes):  # a server is usable, or every one said no for good
            return any(n.usable for n in nodes) or (
                all(n.refused() for n in nodes) and time.monotonic() > discovery_until)

        self._wait_until(settled, bound)
        with self.cond:
            nodes = list(self.remotes.values())
        if any(n.usable for n in nodes):
            return
        reasons = "; ".join(f"{n.name}: {n.reason or 'no answer within %.0f s' % bound}"
                            for n in nodes) or "auto-discovery found no server"
        raise NoWorkers(f"ncpus=0 and no ppserver is usable ({reasons})")

    def nodes(self):
        """{"host:port": workers} of the servers connected now."""
        with self.cond:
            return {n.name: n.workers for n in self.remotes.values() if n.usable}

    def rows(self):
        """[(name, workers, jobs, seconds)] of every server that ran jobs or is connected."""
        with self.cond:
            nodes = list(self.remotes.values())
        rows = []
        for node in nodes:
            jobs, seconds = node.totals()
            if node.usable or jobs:
                rows.append((node.name, node.workers, jobs, seconds))
        return rows

    def close(self):
        """Stops every connector (each within its bounds; its link is closed with a Bye)."""
        self.closing.set()
        with self.cond:
            nodes = list(self.remotes.values())
        for discovery in self._discoveries:
            discovery.close()
        for node in nodes:
            node.thread.join(CONNECT_TIMEOUT_S + _auth.HANDSHAKE_TIMEOUT_S + 1.0)


class Discovery:
    """Finds ppmpi-servers started with -a: asks on the broadcast address, then listens for
    announcements while the Server lives. A found server is connected like a named one (and
    must know the secret: an announcement proves nothing)."""

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
