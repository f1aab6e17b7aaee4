"""ppmpi-server's clients: the listener (Hub) and one Session per authenticated client.

Every wait is bounded: accept polls every ACCEPT_SLICE_S; a connection gets
_auth.HANDSHAKE_TIMEOUT_S to prove the secret, and at most MAX_HANDSHAKES prove at once (the
oldest is closed to make room: a flood cannot lock a real client out); a client's every
read waits at most _wire.SILENCE_LIMIT_S (clients ping every second) and every send has a
bound. A client that goes away, however it goes, has its jobs cancelled, which frees
(replaces) the workers running them."""
import logging
import os
import queue
import socket
import threading
import time

from . import _auth, _wire
from ._bounds import CONTROL_TIMEOUT_S

log = logging.getLogger("ppmpi.server")

ACCEPT_SLICE_S = 0.5
MAX_HANDSHAKES = 64
MAX_CLIENTS = 64


class Hub:
    def __init__(self, server, listener, secret, job_timeout, idle_exit):
        self.server, self.pool = server, server._pool
        self._listener, self._secret = listener, secret
        self.job_timeout, self._idle_exit = job_timeout, idle_exit
        self.lock = threading.Lock()
        self.sessions = set()
        self.owner = {}  # server job id -> (Session, client job id)
        self.workers = server.get_ncpus()
        self._unproven = {}  # sockets whose handshake is running, oldest first
        self._stopping = threading.Event()
        self._why = None
        self._idle_since = time.monotonic()
        self._completer = threading.Thread(target=self._complete, name="ppmpi-server-results",
                                           daemon=True)

    def stop(self, why):
        self._why = why
        self._stopping.set()

    def run(self):
        """Accepts clients until stop() or the idle limit (-t)."""
        self._completer.start()
        self._listener.settimeout(ACCEPT_SLICE_S)
        while not self._stopping.is_set():
            self._check_idle()
            try:
                sock, peer = self._listener.accept()
            except socket.timeout:
                self.workers = self.server.get_ncpus()
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

    def _check_idle(self):
        if self._idle_exit is None:
            return
        with self.lock:
            idle = not self.sessions and time.monotonic() - self._idle_since > self._idle_exit
        if idle:
            self.stop(f"no client for {self._idle_exit:g} s (-t)")

    def _admit(self, sock, peer):
        where = f"{peer[0]}:{peer[1]}"
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            link = _auth.server_handshake(sock, self._secret)
        except _auth.AuthError as exc:
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
            if len(self.sessions) >= MAX_CLIENTS or self._stopping.is_set():
                log.warning("closing %s: %d clients connected already", where, MAX_CLIENTS)
                link.close()
                return
            session = Session(self, link, where)
            self.sessions.add(session)
        log.info("client %s connected (%d connected)", where, len(self.sessions))
        session.start()

    def ended(self, session, reason):
        """`session` is over: its jobs are cancelled (their workers stop and are replaced)."""
        with self.lock:
            self.sessions.discard(session)
            if not self.sessions:
                self._idle_since = time.monotonic()
            tids = list(session.jobs.values())
            session.jobs.clear()
            for tid in tids:
                self.owner.pop(tid, None)
        for tid in tids:
            try:
                self.pool.cancel(tid, CONTROL_TIMEOUT_S)
            except Exception as exc:  # the server is being destroyed
                log.debug("cancel of job %d: %s", tid, exc)
        log.info("client %s left (%s); %d of its jobs cancelled", session.where, reason,
                 len(tids))

    def submit(self, session, job_id, key, bundle, data, buffers, limit):
        if self.job_timeout and (not limit or limit > self.job_timeout):
            limit = self.job_timeout
        # Submitted and owned under one lock, which _complete takes too: a job that ends at
        # once is found by it.
        with self.lock:
            tid = self.pool.submit(key, bundle, data, buffers, 0, True, limit)
            self.owner[tid] = (session, job_id)
            session.jobs[job_id] = tid

    def cancel(self, session, job_id):
        with self.lock:
            tid = session.jobs.get(job_id)
        if tid is not None:
            self.pool.cancel(tid, CONTROL_TIMEOUT_S)

    def _complete(self):
        """Hands each finished job's outcome, as the workers made it, to its client."""
        while not self._stopping.is_set():
            for tid in self.pool.next_notifications(0.25):
                try:
                    outcome = self.pool.take(tid)
                except KeyError:
                    continue
                finally:
                    self.pool.mark_notified(tid)
                with self.lock:
                    owner = self.owner.pop(tid, None)
                    if owner is not None:
                        owner[0].jobs.pop(owner[1], None)
                if owner is not None and outcome is not None:
                    owner[0].outbox.put((owner[1], outcome))

    def close(self):
        self._stopping.set()
        with self.lock:
            sessions = list(self.sessions)
        for session in sessions:
            session.close()
        for session in sessions:
            session.join()
        self._completer.join(1.0)


class Session:
    """One authenticated client: a reader thread (jobs, cancels, pings) and a writer thread
    (INFO, results, pings)."""

    def __init__(self, hub, link, where):
        self.hub, self.link, self.where = hub, link, where
        self.jobs = {}  # client job id -> server job id (guarded by hub.lock)
        self.outbox = queue.Queue()
        self._bundles = _wire.KnownBundles()
        self._closed = threading.Event()
        self._threads = [threading.Thread(target=self._read, daemon=True,
                                          name=f"ppmpi-server-reader-{where}"),
                         threading.Thread(target=self._write, daemon=True,
                                          name=f"ppmpi-server-writer-{where}")]

    def start(self):
        for thread in self._threads:
            thread.start()

    def _read(self):
        reason = "closed"
        try:
            while not self._closed.is_set():
                kind, payload = self.link.receive(_wire.MAX_FRAME_BYTES, _wire.SILENCE_LIMIT_S)
                if kind == _wire.JOB:
                    self._on_job(payload)
                elif kind == _wire.CANCEL and len(payload) == _wire.JOB_ID.size:
                    self.hub.cancel(self, _wire.JOB_ID.unpack(payload)[0])
                elif kind == _wire.BYE:
                    reason = "it said goodbye"
                    break
                elif kind != _wire.PING:
                    raise _wire.WireError(f"unexpected frame kind {kind}")
        except Exception as exc:  # whatever breaks it: the session ends, its jobs are cancelled
            reason = f"{type(exc).__name__}: {exc}"
        self.close()
        self.hub.ended(self, reason)

    def _on_job(self, payload):
        job_id, limit, key, bundle, data, nbuf = _wire.unpack_job(payload)
        buffers = _wire.receive_buffers(self.link, nbuf, _wire.SILENCE_LIMIT_S)
        bundle = self._bundles.resolve(key, bundle)
        self.hub.submit(self, job_id, key, bundle, bytes(data), buffers, limit)

    def _write(self):
        link = self.link
        try:
            link.send(_wire.INFO, _wire.pack_json({
                "version": _wire.PROTOCOL_VERSION, "workers": self.hub.workers,
                "host": socket.gethostname(), "pid": os.getpid()}))
            while not self._closed.is_set():
                try:
                    item = self.outbox.get(timeout=_wire.PING_INTERVAL_S)
                except queue.Empty:
                    link.send(_wire.PING, _wire.pack_json({"workers": self.hub.workers}))
                    continue
                if item is not None:
                    self._send_result(*item)
        except Exception as exc:
            log.debug("sending to %s failed: %s", self.where, exc)
        self.close()

    def _send_result(self, job_id, outcome):
        code, payload, message, worker, seconds, buffers = outcome
        views = [memoryview(b).cast("B") for b in buffers]
        self.link.send(_wire.RESULT, _wire.pack_result(job_id, code, seconds, worker, message,
                                                       payload, len(views)))
        for view in views:
            self.link.send(_wire.BUFFER, view)

    def close(self):
        if not self._closed.is_set():
            self._closed.set()
            self.outbox.put(None)
            self.link.close()

    def join(self):
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(_wire.SILENCE_LIMIT_S)
