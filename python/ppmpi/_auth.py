"""The authenticated, encrypted link between a client and a ppmpi-server: handshake and frames.

pp authenticates one way (the server sends a challenge, the client answers SHA-1 of it with the
secret) and then unpickles whatever arrives. Here both sides prove the secret before anything
else moves, nothing from a peer is unpickled before, and every later frame is encrypted and
authenticated (README "Remote servers"). The protocol and its cryptography are C++ on OpenSSL
(include/ppmpi/link/, exported by _core, loaded on first use: importing ppmpi loads no MPI
library); this module moves their bytes over the socket:
  - the handshake, numbered in link/handshake.hpp: both send a hello (MAGIC, which names the
    link version, and a fresh nonce), the client proves the secret, the server answers ACCEPTED
    with its own proof or REFUSED, the client checks that proof; both derive one AES-256-GCM key
    per direction with HKDF-SHA256. A wrong secret is AuthError, another version VersionError;
  - frames, link/sealed_frames.hpp: [u32 body length][body: kind byte + payload, encrypted]
    [16-byte tag]; a length above the reader's bound is refused before anything is allocated,
    and a frame altered, replayed or out of order ends the link (AuthError).
Every read and write is bounded by a deadline.
"""
import select
import socket
import time

MAGIC = b"PPMPIR03"  # link version 3 (link/handshake.hpp)
NONCE_BYTES = 32
MAC_BYTES = 32  # a proof in the handshake
TAG_BYTES = 16  # a sealed frame's
HEADER_BYTES = 4
ACCEPTED, REFUSED = b"Y", b"N"
HANDSHAKE_TIMEOUT_S = 10.0
SEND_TIMEOUT_S = 30.0
_JOIN_BELOW = 64 * 1024
_UNFILLED_FROM = 1 << 20


# _core raises these three for the C++ link's errors too (link_bindings.cpp).
class LinkError(ConnectionError):
    """The link to a peer broke or the peer broke the protocol."""


class AuthError(LinkError):
    """The peer does not know the secret (or we do not know its), or a frame failed its tag."""


class VersionError(LinkError):
    """The peer speaks another version of the link (or is not ppmpi at all)."""


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


def read_exactly(sock, count, deadline, what):
    """Reads `count` bytes by `deadline` (time.monotonic()), or raises LinkError naming `what`.
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
    """One authenticated, encrypted connection. Not thread-safe: one reader and one writer at a
    time."""

    def __init__(self, sock, keys):
        from . import _core

        self.sock = sock
        self.keys = keys  # (send, receive): the dispatcher takes them with the socket
        self._sealer = _core.LinkSealer(keys[0])
        self._opener = _core.LinkOpener(keys[1])

    def send(self, kind, payload=b"", timeout=SEND_TIMEOUT_S):
        """Sends one frame; LinkError if the peer does not take it within `timeout` s (plus
        the time its size needs). The payload is copied once, into the buffer sealed in place."""
        data = memoryview(payload).cast("B")
        body = _new_buffer(1 + len(data))
        body[0] = kind
        body[1:] = data
        header, tag = self._sealer.seal(body)
        deadline = transfer_deadline(len(body), timeout)
        if len(body) < _JOIN_BELOW:  # one system call (and one TCP segment) for small frames
            write_all(self.sock, header + bytes(body) + tag, deadline)
            return
        write_all(self.sock, header, deadline)
        write_all(self.sock, body, deadline)
        write_all(self.sock, tag, deadline)

    def receive(self, max_bytes, timeout):
        """(kind, payload) of the next frame, payload bytes-like (a bytearray or memoryview);
        LinkError if it is late or too big, AuthError if it is forged."""
        deadline = time.monotonic() + timeout
        header = bytes(read_exactly(self.sock, HEADER_BYTES, deadline, "a frame header"))
        size = self._opener.body_size(header, max_bytes + 1)  # + its kind byte
        if size == 0:
            raise LinkError("an empty frame (every frame starts with its kind)")
        # The payload may be large: its own bound grows with it.
        deadline = max(deadline, transfer_deadline(size, 0.0))
        body = read_exactly(self.sock, size, deadline, "a frame")
        tag = bytes(read_exactly(self.sock, TAG_BYTES, deadline, "a frame's tag"))
        self._opener.open(header, body, tag)
        return body[0], (body[1:] if isinstance(body, bytearray) else memoryview(body)[1:])

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


def _handshake(sock, secret, client, timeout):
    """The steps of link/handshake.hpp, as the client or the server; returns the Link."""
    from . import _core

    deadline = time.monotonic() + timeout
    side = _core.LinkHandshake(client, _as_bytes(secret))
    try:
        while True:
            out = side.take_output()
            if out:  # sent even when the handshake failed: the refusal
                write_all(sock, out, deadline, "sending the handshake")
            if side.done():
                return Link(sock, side.keys())
            failure = side.failure()
            if failure:
                raise (AuthError if failure == "auth" else VersionError)(side.error())
            side.feed(bytes(read_exactly(sock, side.wanted(), deadline, "the peer's handshake")))
    except LinkError:
        raise
    except OSError as e:  # LinkError is one too, hence the clause above
        raise LinkError(f"handshake failed: {e}") from None


def client_handshake(sock, secret, timeout=HANDSHAKE_TIMEOUT_S):
    """The handshake as the client; returns the Link or raises AuthError/VersionError/LinkError."""
    return _handshake(sock, secret, True, timeout)


def server_handshake(sock, secret, timeout=HANDSHAKE_TIMEOUT_S):
    """The handshake as the server; returns the Link or raises AuthError/VersionError/LinkError."""
    return _handshake(sock, secret, False, timeout)


def _as_bytes(secret):
    if isinstance(secret, str):
        return secret.encode()
    if isinstance(secret, (bytes, bytearray)):
        return bytes(secret)
    raise TypeError(f"secret must be str or bytes, not {type(secret).__name__}")
