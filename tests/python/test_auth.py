"""The authenticated link of remote servers (ppmpi._auth): both sides prove the secret, every
frame carries a MAC, and every read has a bound. Over socketpair(): no network involved."""
import os
import socket
import struct
import threading
import time

import pytest

from ppmpi import _auth


def run_both(client_fn, server_fn):
    """Runs the two sides on a socket pair; returns (client result, server result), where a
    result is the returned value or the exception raised."""
    a, b = socket.socketpair()
    results = {}

    def side(name, fn, sock):
        try:
            results[name] = fn(sock)
        except Exception as e:  # noqa: BLE001 - the test inspects it
            results[name] = e

    threads = [threading.Thread(target=side, args=("client", client_fn, a)),
               threading.Thread(target=side, args=("server", server_fn, b))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
        assert not t.is_alive(), "a handshake side did not finish within its bound"
    a.close()
    b.close()
    return results["client"], results["server"]


def link_pair():
    """(client Link, server Link, client socket) after a handshake with the same secret."""
    a, b = socket.socketpair()
    out = {}
    t = threading.Thread(target=lambda: out.update(server=_auth.server_handshake(b, "k")))
    t.start()
    client = _auth.client_handshake(a, "k")
    t.join(10)
    assert "server" in out, "the server side of the handshake did not finish"
    return client, out["server"], a


class Recorder:
    """A socket's stand-in that sends through it and keeps a copy of what it sent."""

    def __init__(self, sock, sent):
        self._sock, self._sent = sock, sent

    def setblocking(self, flag):
        self._sock.setblocking(flag)

    def fileno(self):
        return self._sock.fileno()

    def send(self, data):
        count = self._sock.send(data)
        self._sent.append(bytes(data[:count]))
        return count


def close_pair(client_socket, server):
    client_socket.close()
    server.close()


def linked(secret_client="s3cret", secret_server="s3cret"):
    return run_both(lambda s: _auth.client_handshake(s, secret_client, timeout=5),
                    lambda s: _auth.server_handshake(s, secret_server, timeout=5))


def test_the_right_secret_links_both_sides_and_frames_round_trip():
    client, server, a = link_pair()
    client.send(1, b"hello")
    big = os.urandom(1 << 20)  # more than the socket holds: sent while the server reads
    sender = threading.Thread(target=client.send, args=(2, big))
    sender.start()
    assert server.receive(1 << 21, 5) == (1, b"hello")
    assert server.receive(1 << 21, 5) == (2, big)
    sender.join(10)
    server.send(3, b"back")
    assert client.receive(100, 5) == (3, b"back")
    close_pair(a, server)


def test_a_wrong_secret_is_a_clear_error_on_both_sides():
    client, server = linked("wrong", "right")
    assert isinstance(client, _auth.AuthError) and "refused the secret" in str(client)
    assert isinstance(server, _auth.AuthError) and "wrong secret" in str(server)


def test_a_server_that_does_not_know_the_secret_is_refused_by_the_client():
    def impostor(sock):  # says yes to anything, cannot prove the secret
        sock.sendall(_auth.MAGIC + os.urandom(_auth.NONCE_BYTES))
        _auth.read_exactly(sock, len(_auth.MAGIC) + _auth.NONCE_BYTES + _auth.MAC_BYTES,
                           time.monotonic() + 5, "hello and proof")
        sock.sendall(_auth.ACCEPTED + os.urandom(_auth.MAC_BYTES))

    client, _ = run_both(lambda s: _auth.client_handshake(s, "k", timeout=5), impostor)
    assert isinstance(client, _auth.AuthError) and "could not prove" in str(client)


def test_random_bytes_are_another_protocol():
    def garbage(sock):
        sock.sendall(os.urandom(64))

    _, server = run_both(garbage, lambda s: _auth.server_handshake(s, "k", timeout=5))
    assert isinstance(server, _auth.VersionError) and "not a ppmpi" in str(server)


def test_a_peer_that_never_speaks_times_out_within_the_bound():
    a, b = socket.socketpair()
    start = time.monotonic()
    with pytest.raises(_auth.LinkError, match="timed out"):
        _auth.server_handshake(b, "k", timeout=0.3)
    assert time.monotonic() - start < 5
    a.close()
    b.close()


def test_a_huge_length_prefix_is_refused_before_anything_is_read():
    _, server, a = link_pair()
    a.sendall(struct.pack(">I", 0xFFFFFFFF))  # a sealed frame's length
    with pytest.raises(_auth.LinkError, match="exceeds the bound"):
        server.receive(1 << 20, 5)
    close_pair(a, server)


@pytest.mark.parametrize("attack", ["tamper", "replay"])
def test_a_forged_or_replayed_frame_fails_its_authentication(attack):
    client, server, a = link_pair()
    sent = []

    client.sock = Recorder(a, sent)
    client.send(1, b"payload")
    assert server.receive(100, 5) == (1, b"payload")
    frame = b"".join(sent)
    if attack == "tamper":
        frame = frame[:5] + bytes([frame[5] ^ 0x20]) + frame[6:]  # one bit of the body
    a.setblocking(True)
    a.sendall(frame)
    with pytest.raises(_auth.AuthError, match="failed its authentication"):
        server.receive(100, 5)
    close_pair(a, server)


def test_frames_are_encrypted_on_the_wire_and_large_ones_round_trip():
    client, server, a = link_pair()
    sent = []

    client.sock = Recorder(a, sent)
    secret_text = b"plain text that must not cross the wire as it is" * 4
    client.send(3, secret_text)
    assert server.receive(1 << 10, 5) == (3, secret_text)
    assert b"plain text" not in b"".join(sent)
    big = bytes(range(256)) * (3 << 12)  # 3 MiB: sealed in place, sent in parts
    sender = threading.Thread(target=lambda: client.send(4, big))
    sender.start()
    kind, payload = server.receive(8 << 20, 30)
    sender.join()
    assert kind == 4 and bytes(payload) == big
    close_pair(a, server)


def test_an_older_link_version_is_named():
    def old_client(sock):
        sock.sendall(b"PPMPIR02" + os.urandom(32))  # the link of _wire frames over Python

    _, server = run_both(old_client, lambda s: _auth.server_handshake(s, "k", timeout=5))
    assert isinstance(server, _auth.VersionError)
    assert "version 2, this side version 3" in str(server)
