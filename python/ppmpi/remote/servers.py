"""Server(ppservers=..., secret=...), the client's side: the local pool and remote
ppmpi-servers as one.

Each server's workers are slots of the Server's own pool in the C++ dispatcher, scheduled by
load beside the local workers (one scheduler, one retry accounting; link_transport.hpp). Here
are the entries of ppservers, read as pp reads them, and the ServerLinks that keeps one
connector per server (named, or found by auto-discovery: discovery.py; client.Connector) and
answers the Server's views of them."""
import logging
import threading
import time

from . import DEFAULT_PORT, auth
from .._tunables import CONTROL_TIMEOUT_S
from ..errors import NoWorkers
from .client import CONNECT_TIMEOUT_S, Connector
from .discovery import DISCOVERY_WAIT_S, Discovery

log = logging.getLogger("ppmpi")

# With jobs waiting and no worker (local or remote) usable this long, they fail with
# NoWorkers instead of waiting for a server that may never come back.
NO_NODE_LIMIT_S = 60.0


def parse_address(entry):
    """("host", port) from pp's "host" or "host:port"; ValueError names a bad entry. An empty
    host ("" or ":port", as in the seed's example) is this machine, as in pp (whose connect to
    "" reaches the loopback)."""
    if not isinstance(entry, str):
        raise ValueError(f"ppservers entries must be 'host' or 'host:port' strings, not {entry!r}")
    host, sep, port = entry.strip().rpartition(":")
    if not sep:
        host, port = port, str(DEFAULT_PORT)
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"ppservers entry {entry!r}: the port must be a number in 1..65535")
    return host.strip("[]") or "127.0.0.1", int(port)


def check_ppservers(ppservers, secret):
    """Server()'s checks: a bad entry or secret is an exception naming it, before anything
    starts."""
    if not isinstance(ppservers, tuple):
        raise TypeError(f"ppservers must be a tuple, not {type(ppservers).__name__}")
    for entry in ppservers:
        parse_address(entry)
    if secret is not None and not isinstance(secret, (str, bytes)):
        raise TypeError(f"secret must be a str, not {type(secret).__name__}")


def discovery_addresses(entry):
    """pp's "*" entries: (broadcast address, port). "*" is the global broadcast on port 60000;
    "10.1.2.*:35000" broadcasts to 10.1.2.255 on port 35000."""
    host, port = parse_address(entry)
    pattern = host if host.count(".") == 3 else "*.*.*.*"
    return pattern.replace("*", "255"), port


class ServerLinks:
    """The Server's remote servers: one Connector per server, and the discoveries that add
    more. A Connector's fields are guarded by `cond`; `closing` ends them all."""

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
        bound = CONNECT_TIMEOUT_S + auth.HANDSHAKE_TIMEOUT_S + 1.0
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
            node.thread.join(CONNECT_TIMEOUT_S + auth.HANDSHAKE_TIMEOUT_S + 1.0)
