"""The client's side of one link to a ppmpi-server: a Connector, kept connected. Its thread
walks the link's steps, and its methods come in that order:

  _connect      TCP (bounded), then the handshake (include/ppmpi/link/handshake.hpp steps 1-6,
                its bytes moved by auth.py); the socket and its keys then go to the
                dispatcher, which moves every later byte and schedules the server's workers as
                slots beside the local ones (link/link_transport.hpp, link/link_stream.hpp);
  _watch        the link is usable once the server's Info came (link_stream step 1), until it
                ends (step 5: the server silent for 10 s, its jobs already running elsewhere;
                or the link broke);
  _forget_link  the dispatcher closes it (step 6: Bye).

While the Server lives, _run then reconnects, with a backoff. The server's side of each step:
session.py."""
import logging
import socket
import threading

from . import auth
from .._tunables import CONTROL_TIMEOUT_S

log = logging.getLogger("ppmpi")

CONNECT_TIMEOUT_S = 5.0
# pp retries a lost static server every 5 s; the first retries come sooner.
RECONNECT_FIRST_S, RECONNECT_MAX_S = 0.5, 5.0


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
        """The steps below, again after each end, until the Server closes."""
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
        """TCP, then the handshake (handshake.hpp steps 1-6: both prove the secret, both derive
        the keys); returns the dispatcher's id of the link it now owns."""
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            keys = auth.client_handshake(sock, self._links.secret).keys
        except BaseException:
            sock.close()
            raise
        # From here the dispatcher owns the socket (and closes it, whatever happens).
        return self._pool.attach_link(sock.detach(), keys[0], keys[1], self.name,
                                      CONTROL_TIMEOUT_S)

    def _connect_failed(self, exc):
        """A connect or handshake that failed: why, for Server()'s error and the log."""
        self._definitive = isinstance(exc, (auth.AuthError, auth.VersionError,
                                            ConnectionRefusedError, socket.gaierror))
        reason = f"{type(exc).__name__}: {exc}"
        if reason != self.reason:  # once per distinct reason, not every retry
            log.warning("ppmpi: cannot use the server %s: %s (retrying every %.0f s)",
                        self.name, reason, RECONNECT_MAX_S)
        with self.cond:
            self.reason = reason
            self.cond.notify_all()  # Server() may be waiting to hear

    def refused(self):
        """The last attempt failed in a way a retry within seconds will not change."""
        return self.reason is not None and self._definitive

    def _watch(self):
        """link_stream.hpp steps 1-5, on the dispatcher's side: usable once the server's Info
        came (step 1), until the link ends (step 5: silence, or broken) or the Server closes;
        returns why it ended."""
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
        """Step 6: the dispatcher says Bye and closes the link; its counts are kept."""
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
