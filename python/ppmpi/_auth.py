"""The authenticated link between a client and a ppmpi-server: handshake and frames.

pp authenticates one way (the server sends a challenge, the client answers SHA-1 of it with the
secret) and then unpickles whatever arrives. Here both sides prove the secret before anything
else moves, and every later frame carries a MAC, so nothing is unpickled from a peer that has
not proved it knows the secret (README "Remote servers").

Handshake, in order (every read bounded by ``timeout``):
  1. both send HELLO = MAGIC (8 bytes, names the protocol version) + a fresh 32-byte nonce;
  2. both read the other's HELLO; another MAGIC is a VersionError naming what arrived;
  3. the client sends its proof HMAC-SHA256(secret, b"client" + client nonce + server nonce);
  4. the server checks it in constant time; a wrong one gets REFUSED and the connection closes
     (AuthError on both sides); a right one gets ACCEPTED + the server's proof
     HMAC-SHA256(secret, b"server" + server nonce + client nonce);
  5. the client checks the server's proof the same way (a server that does not know the
     secret is refused by the client).
Both sides then derive the session key HMAC-SHA256(secret, b"session" + client nonce + server
nonce). A frame is [u8 kind][u32 length][payload][32-byte HMAC(session key, direction + u64
sequence number + kind + length + payload)]; a length above the reader's bound is refused
before anything is allocated, and a MAC that does not match ends the link.
"""
import hashlib
import hmac
import os
import select
import socket
import struct
import time

MAGIC = b"PPMPIR01"
NONCE_BYTES = 32
MAC_BYTES = 32
ACCEPTED, REFUSED = b"Y", b"N"
HANDSHAKE_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0
_HEADER = struct.Struct(">BI")
_SEQUENCE = struct.Struct(">Q")
_JOIN_BELOW = 64 * 1024
_CHUNK = 1 << 20  # a large payload is hashed and sent 1 MiB at a time
_UNFILLED_FROM = 1 << 20


class LinkError(ConnectionError):
    """The link to a peer broke or the peer broke the protocol."""


class AuthError(LinkError):
    """The peer does not know the secret (or we do not know its)."""


class VersionError(LinkError):
    """The peer speaks another protocol (or is not ppmpi at all)."""


def _proof(secret, label, first, second):
    return hmac.new(secret, label + first + second, hashlib.sha256).digest()


def _wait_ready(sock, events, deadline, what):
    """Polls until `sock` is ready for `events` or `deadline` passes (LinkError naming what)."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise LinkError(f"timed out {what}")
    poller = select.poll()
    poller.register(sock.fileno(), events | select.POLLERR | select.POLLHUP)
    if not poller.poll(left * 1000.0):
        raise LinkError(f"timed out {what}")


def _new_buffer(count):
    """Room for `count` received bytes: a bytearray, or for large ones a memoryview of memory
    that is not zero-filled first (a 64 MiB bytearray costs a memset the receive overwrites)."""
    if count < _UNFILLED_FROM:
        return bytearray(count)
    import numpy

    return memoryview(numpy.empty(count, dtype=numpy.uint8))


def read_exactly(sock, count, deadline, what, mac=None):
    """Reads `count` bytes by `deadline` (time.monotonic()), or raises LinkError naming `what`;
    each chunk goes into `mac` as it arrives (the hash then runs while the peer still sends).
    The socket stays non-blocking and every wait is a poll() with the time left: a reader and a
    writer thread on one socket then never change each other's timeouts."""
    data = _new_buffer(count)
    view, got = memoryview(data), 0
    sock.setblocking(False)
    while got < count:
        try:
            n = sock.recv_into(view[got:])
        except (BlockingIOError, InterruptedError):
            _wait_ready(sock, select.POLLIN, deadline, f"waiting for {what}")
            continue
        except OSError as e:
            raise LinkError(f"connection lost while reading {what}: {e}") from None
        if n == 0:
            raise LinkError(f"the peer closed the connection before {what}")
        if mac is not None:
            mac.update(view[got:got + n])
        got += n
    return data  # not copied again


def write_all(sock, data, deadline, what="sending"):
    """Sends all of `data` by `deadline`, or raises LinkError (a peer that stopped reading
    cannot block a sender for longer)."""
    view, sent = memoryview(data).cast("B"), 0
    sock.setblocking(False)
    while sent < len(view):
        try:
            sent += sock.send(view[sent:])
        except (BlockingIOError, InterruptedError):
            _wait_ready(sock, select.POLLOUT, deadline, what)
        except OSError as e:
            raise LinkError(f"connection lost while {what}: {e}") from None


def transfer_deadline(nbytes, base):
    """A bound that grows with the size (at least 1 s per 64 MiB on top of `base`)."""
    return time.monotonic() + base + nbytes / (64 << 20)


class Link:
    """One authenticated connection. Not thread-safe: one reader and one writer at a time."""

    def __init__(self, sock, key, is_client):
        self.sock = sock
        self._key = key
        self._out_label = b"c>s" if is_client else b"s>c"
        self._in_label = b"s>c" if is_client else b"c>s"
        self._sent = 0
        self._received = 0

    def _mac(self, label, sequence, header):
        """The frame's MAC so far (its payload goes in with update())."""
        return hmac.new(self._key, label + _SEQUENCE.pack(sequence) + header, hashlib.sha256)

    def send(self, kind, payload=b"", timeout=SEND_TIMEOUT_S):
        """Sends one frame; LinkError if the peer does not take it within `timeout` s (plus
        the time its size needs)."""
        header = _HEADER.pack(kind, len(payload))
        mac = self._mac(self._out_label, self._sent, header)
        self._sent += 1
        deadline = transfer_deadline(len(payload), timeout)
        if len(payload) < _JOIN_BELOW:  # one system call (and one TCP segment) for small frames
            mac.update(payload)
            write_all(self.sock, header + payload + mac.digest(), deadline)
            return
        # No copy of a large payload, and each chunk is hashed just before it goes: the peer
        # receives (and hashes) the first while this side hashes the next.
        write_all(self.sock, header, deadline)
        view = memoryview(payload).cast("B")
        for start in range(0, len(view), _CHUNK):
            chunk = view[start:start + _CHUNK]
            mac.update(chunk)
            write_all(self.sock, chunk, deadline)
        write_all(self.sock, mac.digest(), deadline)

    def receive(self, max_bytes, timeout):
        """(kind, payload) of the next frame, payload bytes-like (a bytearray or memoryview);
        LinkError if it is late, too big or forged."""
        deadline = time.monotonic() + timeout
        header = read_exactly(self.sock, _HEADER.size, deadline, "a frame header")
        kind, length = _HEADER.unpack(header)
        if length > max_bytes:
            raise LinkError(f"a frame of {length} bytes exceeds the bound of {max_bytes}")
        # The payload may be large: its own bound grows with it.
        deadline = max(deadline, transfer_deadline(length, 0.0))
        expected = self._mac(self._in_label, self._received, header)
        payload = (read_exactly(self.sock, length, deadline, "a frame", expected) if length
                   else b"")
        mac = read_exactly(self.sock, MAC_BYTES, deadline, "a frame's MAC")
        if not hmac.compare_digest(bytes(mac), expected.digest()):
            raise AuthError("a frame failed its MAC check (forged, corrupted or replayed)")
        self._received += 1
        return kind, payload

    def close(self):
        """Closes the link; a thread blocked reading it wakes at once (shutdown first: a plain
        close does not end another thread's poll())."""
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        try:
            self.sock.close()
        except OSError:
            pass


def _hello(sock, deadline):
    nonce = os.urandom(NONCE_BYTES)
    write_all(sock, MAGIC + nonce, deadline, "sending the hello")
    hello = read_exactly(sock, len(MAGIC) + NONCE_BYTES, deadline, "the peer's hello")
    if hello[:len(MAGIC)] != MAGIC:
        raise VersionError(f"the peer is not a ppmpi-server/client of this version "
                           f"(it sent {hello[:len(MAGIC)]!r}, expected {MAGIC!r})")
    return nonce, hello[len(MAGIC):]


def _session_key(secret, client_nonce, server_nonce):
    return _proof(secret, b"session", client_nonce, server_nonce)


def client_handshake(sock, secret, timeout=HANDSHAKE_TIMEOUT_S):
    """Steps 1-5 as the client; returns the Link or raises AuthError/VersionError/LinkError."""
    secret = _as_bytes(secret)
    deadline = time.monotonic() + timeout
    try:
        mine, theirs = _hello(sock, deadline)
        write_all(sock, _proof(secret, b"client", mine, theirs), deadline, "sending the proof")
        verdict = read_exactly(sock, 1, deadline, "the server's verdict")
        if verdict == REFUSED:
            raise AuthError("the server refused the secret (wrong secret)")
        if verdict != ACCEPTED:
            raise VersionError(f"the server answered the proof with {verdict!r}")
        proof = read_exactly(sock, MAC_BYTES, deadline, "the server's proof")
        if not hmac.compare_digest(proof, _proof(secret, b"server", theirs, mine)):
            raise AuthError("the server could not prove it knows the secret (wrong secret)")
    except LinkError:
        raise
    except OSError as e:  # LinkError is one too, hence the clause above
        raise LinkError(f"handshake failed: {e}") from None
    return Link(sock, _session_key(secret, mine, theirs), is_client=True)


def server_handshake(sock, secret, timeout=HANDSHAKE_TIMEOUT_S):
    """Steps 1-4 as the server; returns the Link or raises AuthError/VersionError/LinkError."""
    secret = _as_bytes(secret)
    deadline = time.monotonic() + timeout
    try:
        mine, theirs = _hello(sock, deadline)
        proof = read_exactly(sock, MAC_BYTES, deadline, "the client's proof")
        if not hmac.compare_digest(proof, _proof(secret, b"client", theirs, mine)):
            write_all(sock, REFUSED, deadline, "refusing")
            raise AuthError("the client sent a wrong secret")
        write_all(sock, ACCEPTED + _proof(secret, b"server", mine, theirs), deadline,
                  "accepting")
    except LinkError:
        raise
    except OSError as e:  # LinkError is one too, hence the clause above
        raise LinkError(f"handshake failed: {e}") from None
    return Link(sock, _session_key(secret, theirs, mine), is_client=False)


def _as_bytes(secret):
    if isinstance(secret, str):
        return secret.encode()
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
