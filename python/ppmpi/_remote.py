"""The client side of ppservers: one RemoteNode per ppmpi-server, kept connected.

Each RemoteNode has two threads: its writer connects (bounded connect and handshake,
reconnecting with a backoff while the Server lives), then sends the jobs it takes from
Pending, cancels and pings; its reader takes RESULT and PING frames, each read bounded by
_wire.SILENCE_LIMIT_S. A server that breaks the link or stays silent is lost: its jobs go
back to Pending and run elsewhere (_balance.Pending.lost)."""
import collections
import logging
import socket
import threading
import time

from . import _auth, _wire
from ._balance import REMOTE_DEPTH, Node

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


class RemoteNode(Node):
    depth = REMOTE_DEPTH

    def __init__(self, balancer, host, port):
        super().__init__(f"{host}:{port}")
        self.host, self.port = host, port
        self._balancer = balancer
        self._pending = balancer.pending
        self.reason = None  # why the last attempt failed, for Server()'s error
        self._definitive = False
        self._cancels = collections.deque()
        self.thread = threading.Thread(target=self._run, name=f"ppmpi-remote-{self.name}",
                                       daemon=True)

    # -- connecting -------------------------------------------------------------------------
    def _run(self):
        delay = RECONNECT_FIRST_S
        while not self._pending.closed:
            try:
                link, info = self._connect()
            except (OSError, ValueError) as exc:  # LinkError/AuthError are OSErrors
                self._connect_failed(exc)
                self._balancer.closing.wait(delay)
                delay = min(2 * delay, RECONNECT_MAX_S)
                continue
            delay = RECONNECT_FIRST_S
            reason = self._serve(link, info)
            self._pending.lost(self, reason, self._balancer.max_retries)
            if not self._pending.closed:
                log.warning("ppmpi: lost the server %s (%s); reconnecting", self.name, reason)

    def _connect(self):
        sock = socket.create_connection((self.host, self.port), timeout=CONNECT_TIMEOUT_S)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _auth.client_handshake(sock, self._balancer.secret)
            kind, payload = link.receive(64 * 1024, _auth.HANDSHAKE_TIMEOUT_S)
            if kind != _wire.INFO:
                raise _auth.VersionError(f"the server sent frame kind {kind} instead of INFO")
            info = _wire.unpack_json(payload, "INFO")
            if info.get("version") != _wire.PROTOCOL_VERSION:
                raise _auth.VersionError(f"the server speaks protocol {info.get('version')!r}, "
                                         f"this client {_wire.PROTOCOL_VERSION}")
            return link, info
        except BaseException:
            sock.close()
            raise

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
        self.reason = reason
        self._pending.changed()  # Server() may be waiting to hear

    # -- one connection ---------------------------------------------------------------------
    def _serve(self, link, info):
        """Runs the connection until it breaks; returns why."""
        self._known, self._broken = _wire.KnownBundles(), None
        with self._pending.cond:
            self.workers = int(info.get("workers", 0))
            self.usable = True
            self._cancels.clear()
            self._pending.cond.notify_all()
        self.reason = None
        log.info("ppmpi: connected to the server %s (%d workers, pid %s)", self.name,
                 self.workers, info.get("pid"))
        reader = threading.Thread(target=self._read, args=(link,),
                                  name=f"ppmpi-remote-reader-{self.name}", daemon=True)
        reader.start()
        try:
            self._write(link)
        except Exception as exc:  # whatever breaks it, the link ends (and its jobs move)
            self._break(f"{type(exc).__name__}: {exc}")
        if self._pending.closed:
            self._say_bye(link)
        link.close()
        reader.join(_wire.SILENCE_LIMIT_S)
        return self._broken or "closed"

    def _break(self, reason):
        with self._pending.cond:
            if self._broken is None:
                self._broken = reason
            self.wake = True
            self._pending.cond.notify_all()

    def _write(self, link):
        last_sent = time.monotonic()
        while not self._pending.closed and self._broken is None:
            entry = self._pending.take(self, _wire.PING_INTERVAL_S / 2)
            with self._pending.cond:
                self.wake = False
                cancels = list(self._cancels)
                self._cancels.clear()
            for tid in cancels:
                link.send(_wire.CANCEL, _wire.JOB_ID.pack(tid))
            if entry is not None:
                self._send_job(link, entry)
            if entry is not None or cancels:
                last_sent = time.monotonic()
            elif time.monotonic() - last_sent >= _wire.PING_INTERVAL_S:
                link.send(_wire.PING)
                last_sent = time.monotonic()

    def _send_job(self, link, entry):
        buffers = [memoryview(b).cast("B") for b in entry.buffers]
        bundle = b"" if self._known.seen(entry.key) else entry.bundle
        link.send(_wire.JOB, _wire.pack_job(entry.tid, entry.limit, entry.key, bundle,
                                            entry.data, len(buffers)))
        for buffer in buffers:
            link.send(_wire.BUFFER, buffer)

    def _read(self, link):
        try:
            while self._broken is None:
                kind, payload = link.receive(_wire.MAX_FRAME_BYTES, _wire.SILENCE_LIMIT_S)
                if kind == _wire.RESULT:
                    self._on_result(link, payload)
                elif kind == _wire.PING:
                    self._on_ping(payload)
                else:
                    raise _wire.WireError(f"unexpected frame kind {kind} from the server")
        except Exception as exc:  # whatever breaks it, the link ends (and its jobs move)
            self._break(f"{type(exc).__name__}: {exc}")

    def _on_result(self, link, payload):
        tid, code, seconds, worker, message, body, nbuf = _wire.unpack_result(payload)
        buffers = _wire.receive_buffers(link, nbuf, _wire.SILENCE_LIMIT_S)
        from . import _core  # loaded by now: this process runs a Server

        if code not in _core.OUTCOMES.values():  # the one table, core/outcomes.hpp
            raise _wire.WireError(f"unknown outcome code {code}")
        if self._pending.release(self, tid, seconds) is not None:
            self._balancer.pool.finish(tid, code, bytes(body), message,
                                       f"{self.name}/{worker}", seconds, buffers)

    def _on_ping(self, payload):
        if not payload:
            return
        workers = _wire.unpack_json(payload, "PING").get("workers")
        if isinstance(workers, int) and workers >= 0 and workers != self.workers:
            with self._pending.cond:
                self.workers = workers
                self._pending.cond.notify_all()

    def cancel(self, tid):
        with self._pending.cond:
            self.inflight.pop(tid, None)
            self._cancels.append(tid)
            self.wake = True
            self._pending.cond.notify_all()

    def _say_bye(self, link):
        try:
            link.send(_wire.BYE, timeout=1.0)
        except OSError:
            pass
