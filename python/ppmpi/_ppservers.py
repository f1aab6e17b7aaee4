"""Server(ppservers=..., secret=...): the local pool and remote ppmpi-servers as one.

The Balancer owns the Pending queue, the LocalNode and one RemoteNode per server (named, or
found by auto-discovery). Jobs keep the id the Server's job table gave them wherever they run,
so job(), wait(), callbacks and futures work the same for every node."""
import logging
import socket
import threading
import time

from . import _auth, _serialize
from ._balance import Entry, LocalNode, Pending, end_job
from ._remote import CONNECT_TIMEOUT_S, RemoteNode, parse_address
from .errors import NoWorkers

log = logging.getLogger("ppmpi")

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


class Balancer:
    def __init__(self, pool, ncpus, ppservers, secret, max_retries):
        self.pool, self.secret, self.max_retries = pool, secret, max_retries
        self.pending = Pending(pool)
        self.closing = threading.Event()
        self._lock = threading.Lock()
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
        self.local = LocalNode(self.pending, pool, ncpus)
        self.pending.add_node(self.local)
        self.local.thread.start()
        for entry in ppservers:
            if "*" not in entry:
                self.add_server(*parse_address(entry))
        for discovery in self._discoveries:
            discovery.thread.start()

    def add_server(self, host, port):
        """Connects to host:port unless a node for it exists already."""
        with self._lock:
            name = f"{host}:{port}"
            if name in self.remotes or self.closing.is_set():
                return
            node = self.remotes[name] = RemoteNode(self, host, port)
        self.pending.add_node(node)
        node.thread.start()

    # -- jobs -------------------------------------------------------------------------------
    def submit(self, key, bundle, data, buffers, group_id, notify, limit):
        tid = self.pool.create(group_id, notify)
        self.pending.add(Entry(tid, key, bundle, data, buffers, limit))
        return tid

    def cancel(self, tid, timeout, running_too=True):
        if self.pending.remove(tid) is not None:
            return end_job(self.pool, tid, _serialize.CANCELLED, "cancelled")
        node = self.pending.holder(tid)
        if node is self.local or node is None:
            return self.pool.cancel(tid, timeout, running_too)
        if not running_too:
            return False  # it may be running on its server already
        node.cancel(tid)  # the server stops it; its late result is dropped
        return end_job(self.pool, tid, _serialize.CANCELLED, "cancelled")

    # -- start-up and views -----------------------------------------------------------------
    def _wait_until(self, settled, bound):
        """Waits (at most bound seconds) until settled(nodes) is true; returns whether it is.
        A node that connects or fails notifies pending.cond, so this wakes at once."""
        deadline = time.monotonic() + bound
        while True:
            with self._lock:
                nodes = list(self.remotes.values())
            if settled(nodes):
                return True
            if time.monotonic() >= deadline:
                return False
            with self.pending.cond:
                self.pending.cond.wait(0.05)

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
        with self._lock:
            nodes = list(self.remotes.values())
        if any(n.usable for n in nodes):
            return
        reasons = "; ".join(f"{n.name}: {n.reason or 'no answer within %.0f s' % bound}"
                            for n in nodes) or "auto-discovery found no server"
        raise NoWorkers(f"ncpus=0 and no ppserver is usable ({reasons})")

    def nodes(self):
        """{"host:port": workers} of the servers connected now."""
        with self.pending.cond:
            return {n.name: n.workers for n in self.remotes.values() if n.usable}

    def rows(self):
        """[(name, workers, jobs, seconds)] of every server that ran jobs or is connected."""
        with self.pending.cond:
            return [(n.name, n.workers, n.jobs, n.seconds) for n in self.remotes.values()
                    if n.usable or n.jobs]

    def close(self):
        """Stops every node thread (each within its bounds); unfinished jobs are then failed
        by the pool's destroy."""
        self.closing.set()
        self.local.stopping.set()
        self.pending.close()
        with self._lock:
            nodes = list(self.remotes.values())
        for discovery in self._discoveries:
            discovery.close()
        for node in nodes:
            node.thread.join(CONNECT_TIMEOUT_S + 1.0)
        self.local.thread.join(1.0)


class Discovery:
    """Finds ppmpi-servers started with -a: asks on the broadcast address, then listens for
    announcements while the Server lives. A found server is connected like a named one (and
    must know the secret: an announcement proves nothing)."""

    def __init__(self, balancer, broadcast, port):
        self._balancer, self._broadcast, self._port = balancer, broadcast, port
        self._sock = discovery_socket(port)
        self.thread = threading.Thread(target=self._run, name="ppmpi-discovery", daemon=True)

    def _run(self):
        asked = 0.0
        while not self._balancer.closing.is_set():
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
                self._balancer.add_server(host, int(data[len(ANNOUNCE):]))

    def close(self):
        if self.thread.is_alive():
            self.thread.join(2.0)
        self._sock.close()
