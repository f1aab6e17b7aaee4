"""The handshake of remote servers' link (ppmpi.remote.auth): both sides prove the secret, agree
on keys, and every read has a bound. Over socketpair(): no network involved. The frames after it
are the dispatcher's (tests/unit/remote_link_test.cpp)."""
import os
import socket
import threading
import time

import pytest

from ppmpi.remote import auth


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
    t = threading.Thread(target=lambda: out.update(server=auth.server_handshake(b, "k")))
    t.start()
    client = auth.client_handshake(a, "k")
    t.join(10)
    assert "server" in out, "the server side of the handshake did not finish"
    return client, out["server"], a


def linked(secret_client="s3cret", secret_server="s3cret"):
    return run_both(lambda s: auth.client_handshake(s, secret_client, timeout=5),
                    lambda s: auth.server_handshake(s, secret_server, timeout=5))


def test_the_right_secret_gives_both_sides_the_same_keys_crosswise():
    client, server, a = link_pair()
    assert client.keys[0] == server.keys[1] and client.keys[1] == server.keys[0]
    assert client.keys[0] != client.keys[1] and len(client.keys[0]) == 32
    _, other, b = link_pair()  # fresh nonces: every connection's keys are new
    assert other.keys[0] != server.keys[0]
    for link in (client, server, other):
        link.close()
    a.close()
    b.close()


def test_a_wrong_secret_is_a_clear_error_on_both_sides():
    client, server = linked("wrong", "right")
    assert isinstance(client, auth.AuthError) and "refused the secret" in str(client)
    assert isinstance(server, auth.AuthError) and "wrong secret" in str(server)


def test_a_server_that_does_not_know_the_secret_is_refused_by_the_client():
    def impostor(sock):  # says yes to anything, cannot prove the secret
        sock.sendall(auth.MAGIC + os.urandom(auth.NONCE_BYTES))
        auth.read_exactly(sock, len(auth.MAGIC) + auth.NONCE_BYTES + auth.MAC_BYTES,
                           time.monotonic() + 5, "hello and proof")
        sock.sendall(auth.ACCEPTED + os.urandom(auth.MAC_BYTES))

    client, _ = run_both(lambda s: auth.client_handshake(s, "k", timeout=5), impostor)
    assert isinstance(client, auth.AuthError) and "could not prove" in str(client)


def test_random_bytes_are_another_protocol():
    def garbage(sock):
        sock.sendall(os.urandom(64))

    _, server = run_both(garbage, lambda s: auth.server_handshake(s, "k", timeout=5))
    assert isinstance(server, auth.VersionError) and "not a ppmpi" in str(server)


def test_a_peer_that_never_speaks_times_out_within_the_bound():
    a, b = socket.socketpair()
    start = time.monotonic()
    with pytest.raises(auth.LinkError, match="timed out"):
        auth.server_handshake(b, "k", timeout=0.3)
    assert time.monotonic() - start < 5
    a.close()
    b.close()


def test_an_older_link_version_is_named():
    def old_client(sock):
        sock.sendall(b"PPMPIR02" + os.urandom(32))  # the link of _wire frames over Python

    _, server = run_both(old_client, lambda s: auth.server_handshake(s, "k", timeout=5))
    assert isinstance(server, auth.VersionError)
    assert "version 2, this side version 4" in str(server)
