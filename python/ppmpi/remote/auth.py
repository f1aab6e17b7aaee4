"""The handshake of the link between a client and a ppmpi-server, driven over the socket.

pp authenticates one way (the server sends a challenge, the client answers SHA-1 of it with the
secret) and then unpickles whatever arrives. Here both sides prove the secret before anything
else moves (README "Remote servers"). The protocol and its cryptography are C++ on OpenSSL
(include/ppmpi/link/handshake.hpp, exported by _core, loaded on first use: importing ppmpi
loads no MPI library); this module moves their bytes, each read and write bounded: both send
a hello (MAGIC, which names the link version, and a fresh nonce), the client proves the
secret, the server answers ACCEPTED with its own proof or REFUSED, the client checks that
proof; both derive one AES-256-GCM key per direction with HKDF-SHA256. A wrong secret is
AuthError, another version VersionError. The socket and its keys then go to the dispatcher,
which seals and moves every later byte (link/link_stream.hpp)."""
import select
import socket
import time

MAGIC = b"PPMPIR04"  # link version 4 (link/handshake.hpp)
NONCE_BYTES = 32
MAC_BYTES = 32  # a proof in the handshake
ACCEPTED, REFUSED = b"Y", b"N"
HANDSHAKE_TIMEOUT_S = 10.0


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


def read_exactly(sock, count, deadline, what):
    """Reads `count` bytes by `deadline` (time.monotonic()), or raises LinkError naming `what`.
    The socket stays non-blocking and every wait is a poll() with the time left: a reader and a
    writer thread on one socket then never change each other's timeouts."""
    data = bytearray(count)
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


class Link:
    """An authenticated connection: its socket and its session keys (send, receive), which
    the dispatcher takes over (PoolHandle.attach_link / serve_link)."""

    def __init__(self, sock, keys):
        self.sock, self.keys = sock, keys

    def close(self):
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
    from .. import _core

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
