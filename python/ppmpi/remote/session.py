"""ppmpi-server's side of its links: the listener (Hub) admits clients; the dispatcher serves
them. The Hub's methods come in the order of a client's steps:

  run         accepts, polling every ACCEPT_SLICE_S (every wait here is bounded);
  _make_room  at most MAX_HANDSHAKES connections prove the secret at once: the oldest is
              closed to make room, so a flood cannot lock a real client out;
  _admit      the handshake (include/ppmpi/link/handshake.hpp steps 1-6, its bytes moved by
              auth.py, within auth.HANDSHAKE_TIMEOUT_S); then the socket and its session keys
              go to this process's dispatcher (Server.serve_client), which relays the
              client's jobs into the server's pool and their outcomes back on its own thread
              (link/link_stream.hpp steps 1-6, master/link_relay.hpp);
  _take_news  the clients that left: silent for 10 s (link_stream step 5), broken, or said
              Bye (step 6). However a client goes, its jobs are cancelled, which frees
              (replaces) their workers.

The client's side of each step: client.py."""
import logging
import socket
import threading
import time

from . import auth

log = logging.getLogger("ppmpi.server")

ACCEPT_SLICE_S = 0.5
MAX_HANDSHAKES = 64
MAX_CLIENTS = 64


class Hub:
    """Admits the clients of one ppmpi-server; `server` is its ppmpi.Server."""

    def __init__(self, server, listener, secret, job_timeout, idle_exit):
        self.server = server
        self._listener, self._secret = listener, secret
        self.job_timeout, self._idle_exit = job_timeout, idle_exit
        self.lock = threading.Lock()
        self.clients = 0  # connected now, as the dispatcher last said
        self._unproven = {}  # sockets whose handshake is running, oldest first
        self._stopping = threading.Event()
        self._why = None
        self._idle_since = time.monotonic()

    def run(self):
        """Accepts clients until stop() or the idle limit (-t)."""
        self._listener.settimeout(ACCEPT_SLICE_S)
        while not self._stopping.is_set():
            self._take_news()
            self._check_idle()
            try:
                sock, peer = self._listener.accept()
            except socket.timeout:
                continue
            except OSError as exc:  # out of file descriptors under a flood: wait a little
                log.warning("accept failed: %s", exc)
                self._stopping.wait(0.1)
                continue
            self._make_room()
            with self.lock:
                self._unproven[sock] = None
            threading.Thread(target=self._admit, args=(sock, peer), daemon=True,
                             name="ppmpi-server-handshake").start()
        log.info("stopping (%s)", self._why)

    def _make_room(self):
        """At most MAX_HANDSHAKES connections may be proving the secret at once: past that the
        oldest is closed (its thread then ends at once), so a flood of silent connections
        delays a real client by nothing, instead of filling the server for 10 s each."""
        with self.lock:
            if len(self._unproven) < MAX_HANDSHAKES:
                return
            oldest = next(iter(self._unproven))
            del self._unproven[oldest]
        log.warning("closing the oldest of %d connections still proving the secret",
                    MAX_HANDSHAKES)
        try:
            oldest.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass

    def _admit(self, sock, peer):
        """handshake.hpp steps 1-6 as the server, then link_stream.hpp's steps belong to the
        dispatcher (Server.serve_client), unless MAX_CLIENTS are connected already."""
        where = f"{peer[0]}:{peer[1]}"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = auth.server_handshake(sock, self._secret)
        except auth.AuthError as exc:
            log.warning("refused %s: %s", where, exc)
            sock.close()
            return
        except OSError as exc:  # LinkError, VersionError: garbage, silence, a closed socket
            log.info("dropped %s before it authenticated: %s", where, exc)
            sock.close()
            return
        finally:
            with self.lock:
                self._unproven.pop(sock, None)
        with self.lock:
            full = self.clients >= MAX_CLIENTS or self._stopping.is_set()
            if not full:
                self.clients += 1  # counted until the dispatcher says otherwise
        if full:
            log.warning("closing %s: %d clients connected already", where, MAX_CLIENTS)
            link.close()
            return
        try:  # the dispatcher owns the socket from here (and closes it, whatever happens)
            self.server.serve_client(sock, link.keys, where, self.job_timeout)
        except Exception as exc:  # the server is being destroyed
            log.warning("cannot serve %s: %s", where, exc)
            return
        log.info("client %s connected (%d connected)", where, self.clients)

    def _take_news(self):
        """How many clients the dispatcher serves now, and what happened to those that left
        (link_stream.hpp step 5: silent, or broken; step 6: Bye)."""
        clients, events = self.server.client_sessions()
        for event in events:
            log.info("%s", event)
        with self.lock:
            if clients == 0 and self.clients > 0:
                self._idle_since = time.monotonic()
            self.clients = clients

    def _check_idle(self):
        if self._idle_exit is None:
            return
        with self.lock:
            idle = not self.clients and time.monotonic() - self._idle_since > self._idle_exit
        if idle:
            self.stop(f"no client for {self._idle_exit:g} s (-t)")

    def stop(self, why):
        """Ends run() (a signal, or the idle limit)."""
        self._why = why
        self._stopping.set()

    def close(self):
        self._stopping.set()
        self._take_news()
