// ppmpi/link/handshake.hpp: how a client and a ppmpi-server prove to each other that both know
// the secret, and agree on the keys that seal every later frame (sealed_frames.hpp).
//
// pp authenticates one way and then unpickles whatever arrives. Here both sides prove the
// secret before anything else moves, nothing the peer sends is unpickled before, and from then
// on every frame is encrypted and authenticated. The handshake, in order:
//  1. Both send HELLO: kMagic (6 bytes) + the link protocol version (2 ASCII digits) + a fresh
//     32-byte nonce (OpenSSL's CSPRNG).
//  2. Both read the peer's HELLO. Other magic: VersionError "not ppmpi"; another version:
//     VersionError naming both versions.
//  3. The client sends its proof HMAC-SHA256(secret, "client" + client nonce + server nonce).
//  4. The server checks it in constant time. A wrong one: the server sends REFUSED ('N') and
//     both sides end with AuthError. A right one: ACCEPTED ('Y') + the server's proof
//     HMAC-SHA256(secret, "server" + server nonce + client nonce).
//  5. The client checks the server's proof the same way: a server that does not know the
//     secret is refused by the client (AuthError).
//  6. Both derive one key per direction: HKDF-SHA256(secret, salt = client nonce + server
//     nonce, info = "ppmpi link 03 c>s" or "... s>c"), 32 bytes each. Fresh nonces from both
//     sides make every connection's keys new, so frames of one connection replayed into
//     another fail their authentication.
//
// The class does no I/O (a fuzzer and the unit tests drive it with bytes): the caller sends
// output(), feeds what arrives, until done() or failed(). A failed handshake may still have
// output (the refusal) to send before the caller closes the connection.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

#include "ppmpi/link/crypto.hpp"

namespace ppmpi::link {

constexpr std::string_view kMagic = "PPMPIR";
constexpr int kLinkVersion = 4;  // 1: HMAC frames in the clear; 2: _wire frames over Python;
                                 // 3: Task without awaited
constexpr std::size_t kNonceBytes = 32;
constexpr std::size_t kHelloBytes = kMagic.size() + 2 + kNonceBytes;

struct SessionKeys {
    Bytes send;     // seals what this side sends
    Bytes receive;  // opens what it receives
};

class Handshake {
  public:
    enum class Role { Client, Server };
    enum class Failure { None, Auth, Version };

    // An empty `secret` is allowed here; whether a link may go without one (loopback only) is
    // the caller's rule.
    Handshake(Role role, std::string secret);
    // For tests and fuzzing: this side's nonce given, not drawn.
    Handshake(Role role, std::string secret, Bytes nonce);

    // Bytes to send now; taking them empties the queue.
    Bytes take_output();
    // Feeds received bytes; returns how many were used (never more than the current step
    // needs: what follows the handshake belongs to the frames).
    std::size_t feed(std::string_view bytes);
    // How many more bytes the current step needs (0 once done or failed).
    std::size_t wanted() const;

    bool done() const { return step_ == Step::Done; }
    Failure failure() const { return failure_; }
    const std::string& error() const { return error_; }  // why it failed, for the exception
    // Throws the failure as AuthError or VersionError (after the caller sent the output).
    [[noreturn]] void raise() const;
    const SessionKeys& keys() const;

  private:
    enum class Step { Hello, Proof, Verdict, ServerProof, Done, Failed };
    void on_hello(std::string_view hello);
    void on_client_proof(std::string_view proof);
    void on_verdict(std::string_view verdict);
    void on_server_proof(std::string_view proof);
    void fail(Failure failure, std::string why);
    void derive_keys();
    Bytes proof(std::string_view label, bool mine_first) const;

    Role role_;
    std::string secret_;
    Bytes mine_, theirs_;  // nonces
    Step step_ = Step::Hello;
    Bytes input_, output_;
    Failure failure_ = Failure::None;
    std::string error_;
    SessionKeys keys_;
};

}  // namespace ppmpi::link
