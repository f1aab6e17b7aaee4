"""The client side of ppservers: one Connector per ppmpi-server, kept connected.

A Connector's thread connects (bounded connect and handshake, _auth) and hands the
authenticated socket to the dispatcher, which moves every later byte and schedules the
server's workers as slots beside the local ones (include/ppmpi/link/link_transport.hpp, steps
in link_stream.hpp). The thread then only watches the link: once it ended (broken, or the
server silent for 10 s: its jobs already run elsewhere), it reconnects with a backoff while
the Server lives."""
import logging
import socket
import threading

from . import _auth
from ._tunables import CONTROL_TIMEOUT_S

log = logging.getLogger("ppmpi")

DEFAULT_PORT = 60000
CONNECT_TIMEOUT_S = 5.0
# pp retries a lost static server every 5 s; the first retries come sooner.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.5, 5.0


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


class Connector:
    """One ppmpi-server. Its fields are guarded by `cond` (ServerLinks')."""

    def __init__(self, links, host, port):
        self.name, self.host, self.port = f"{host}:{port}", host, port
        self._links, self._pool, self.cond = links, links.pool, links.cond
        self.usable = False
        self.workers = 0
        self.reason = None  # why the last attempt failed, for Server()'s error
        self._definitive = False
        self._link = None  # the dispatcher's id of the current link
        self._done_jobs, self._done_seconds = 0, 0.0  # of its earlier links
        self.thread = threading.Thread(target=self._run, name=f"ppmpi-remote-{self.name}",
                                       daemon=True)

    def _run(self):
        delay = RECONNECT_FIRST_S
        closing = self._links.closing
        while not closing.is_set():
            try:
                self._link = self._connect()
            except (OSError, ValueError, RuntimeError) as exc:  # LinkError/AuthError: OSErrors
                self._connect_failed(exc)
                closing.wait(delay)
                delay = min(2 * delay, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_FIRST_S
            reason = self._watch()
            if not closing.is_set():
                log.warning("ppmpi: lost the server %s (%s); reconnecting", self.name, reason)

    def _connect(self):
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keys = _auth.client_handshake(sock, self._links.secret).keys
        except BaseException:
            sock.close()
            raise
        # From here the dispatcher owns the socket (and closes it, whatever happens).
        return self._pool.attach_link(sock.detach(), keys[0], keys[1], self.name,
                                      CONTROL_TIMEOUT_S)

    def _watch(self):
        """Until the link ends (or the Server closes): returns why it ended."""
        closing = self._links.closing
        while True:
            status = self._pool.link_status(self._link, CONTROL_TIMEOUT_S)
            if status["ended"] or not status["known"] or closing.is_set():
                self._forget_link(status)
                return status["reason"] or "closed"
            if status["ready"] and not self.usable:
                with self.cond:
                    self.workers, self.usable, self.reason = status["workers"], True, None
                    self.cond.notify_all()
                log.info("ppmpi: connected to the server %s (%d workers, pid %s)", self.name,
                         self.workers, status["pid"])
            closing.wait(0.2 if self.usable else 0.01)

    def _forget_link(self, status):
        with self.cond:
            self.usable = False
            self._done_jobs += status["jobs"]
            self._done_seconds += status["seconds"]
            self.cond.notify_all()
        try:
            self._pool.close_link(self._link, CONTROL_TIMEOUT_S)
        except Exception as exc:  # the Server is being destroyed
            log.debug("ppmpi: closing the link to %s: %s", self.name, exc)
        self._link = None

    def refused(self):
        """The last attempt failed in a way a retry within seconds will not change."""
        return self.reason is not None and self._definitive

    def _connect_failed(self, exc):
        self._definitive = isinstance(exc, (_auth.AuthError, _auth.VersionError,
                                            ConnectionRefusedError, socket.gaierror))
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self.reason:  # once per distinct reason, not every retry
            log.warning("ppmpi: cannot use the server %s: %s (retrying every %.0f s)",
                        self.name, reason, RECONNECT_MAX_S)
        with self.cond:
            self.reason = reason
            self.cond.notify_all()  # Server() may be waiting to hear

    def totals(self):
        """(jobs, seconds) its workers ran for this Server, over all its links."""
        jobs, seconds = self._done_jobs, self._done_seconds
        link = self._link
        if link is not None:
            try:
                status = self._pool.link_status(link, CONTROL_TIMEOUT_S)
                jobs, seconds = jobs + status["jobs"], seconds + status["seconds"]
            except Exception:  # closed meanwhile: counted in _done_*
                pass
        return jobs, seconds
