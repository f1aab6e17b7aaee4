#include "ppmpi/link/handshake.hpp"

#include <algorithm>
#include <cctype>
#include <cstdio>

#include "ppmpi/core/errors.hpp"

namespace ppmpi::link {

namespace {

constexpr char kAccepted = 'Y';
constexpr char kRefused = 'N';

std::string version_text(int version) {
    char text[3];
    std::snprintf(text, sizeof text, "%02d", version);
    return text;
}

// What arrived, readable in an error message.
std::string shown(std::string_view bytes) {
    std::string out;
    for (char c : bytes) {
        auto u = static_cast<unsigned char>(c);
        if (std::isprint(u) && c != '\\') {
            out += c;
        } else {
            char hex[5];
            std::snprintf(hex, sizeof hex, "\\x%02x", u);
            out += hex;
        }
    }
    return out;
}

}  // namespace

Handshake::Handshake(Role role, std::string secret)
    : Handshake(role, std::move(secret), random_bytes(kNonceBytes)) {}

Handshake::Handshake(Role role, std::string secret, Bytes nonce)
    : role_(role), secret_(std::move(secret)), mine_(std::move(nonce)) {
    PPMPI_ENFORCE(mine_.size() == kNonceBytes, "a nonce of ", kNonceBytes, " bytes");
    output_ = std::string(kMagic) + version_text(kLinkVersion) + mine_;  // step 1
}

Bytes Handshake::take_output() {
    Bytes out;
    out.swap(output_);
    return out;
}

std::size_t Handshake::wanted() const {
    switch (step_) {
        case Step::Hello: return kHelloBytes - input_.size();
        case Step::Proof:
        case Step::ServerProof: return kDigestBytes - input_.size();
        case Step::Verdict: return 1 - input_.size();
        default: return 0;
    }
}

std::size_t Handshake::feed(std::string_view bytes) {
    std::size_t used = 0;
    while (used < bytes.size() && wanted() > 0) {
        std::size_t part = std::min(wanted(), bytes.size() - used);
        input_.append(bytes.substr(used, part));
        used += part;
        if (wanted() > 0) break;
        Bytes whole;
        whole.swap(input_);
        switch (step_) {
            case Step::Hello: on_hello(whole); break;
            case Step::Proof: on_client_proof(whole); break;
            case Step::Verdict: on_verdict(whole); break;
            case Step::ServerProof: on_server_proof(whole); break;
            default: break;
        }
    }
    return used;
}

// Step 2 (and, for the client, step 3).
void Handshake::on_hello(std::string_view hello) {
    std::string_view magic = hello.substr(0, kMagic.size());
    std::string_view digits = hello.substr(kMagic.size(), 2);
    std::string expected = std::string(kMagic) + version_text(kLinkVersion);
    bool numbered = std::isdigit(static_cast<unsigned char>(digits[0])) &&
                    std::isdigit(static_cast<unsigned char>(digits[1]));
    if (magic != kMagic || !numbered)
        return fail(Failure::Version, "the peer is not a ppmpi client or server (it sent '" +
                                          shown(hello.substr(0, 8)) + "' where '" + expected +
                                          "' was expected)");
    int version = (digits[0] - '0') * 10 + (digits[1] - '0');
    if (version != kLinkVersion)
        return fail(Failure::Version,
                    "the peer speaks ppmpi link protocol version " + std::to_string(version) +
                        ", this side version " + std::to_string(kLinkVersion) +
                        ": run the same ppmpi release on the client and its servers");
    theirs_ = Bytes(hello.substr(kMagic.size() + 2));
    if (role_ == Role::Client) {
        output_ += proof("client", true);
        step_ = Step::Verdict;
    } else {
        step_ = Step::Proof;
    }
}

// Step 4, the server's side.
void Handshake::on_client_proof(std::string_view received) {
    if (!same_bytes(received, proof("client", false))) {
        output_ += kRefused;
        return fail(Failure::Auth, "the client sent a wrong secret");
    }
    output_ += kAccepted;
    output_ += proof("server", true);
    derive_keys();
}

// Step 4, the client's side.
void Handshake::on_verdict(std::string_view verdict) {
    if (verdict[0] == kRefused)
        return fail(Failure::Auth, "the server refused the secret (wrong secret)");
    if (verdict[0] != kAccepted)
        return fail(Failure::Version,
                    "the server answered the proof with '" + shown(verdict) + "'");
    step_ = Step::ServerProof;
}

// Step 5.
void Handshake::on_server_proof(std::string_view received) {
    if (!same_bytes(received, proof("server", false)))
        return fail(Failure::Auth,
                    "the server could not prove it knows the secret (wrong secret)");
    derive_keys();
}

// Steps 3-5: HMAC(secret, label + the prover's nonce + the other's). `mine_first`: this side
// proves; otherwise the proof the peer must have sent.
Bytes Handshake::proof(std::string_view label, bool mine_first) const {
    const Bytes& first = mine_first ? mine_ : theirs_;
    const Bytes& second = mine_first ? theirs_ : mine_;
    return hmac_sha256(secret_, std::string(label) + first + second);
}

// Step 6.
void Handshake::derive_keys() {
    bool client = role_ == Role::Client;
    Bytes salt = client ? mine_ + theirs_ : theirs_ + mine_;
    std::string info = "ppmpi link " + version_text(kLinkVersion);
    Bytes to_server = hkdf_sha256(secret_, salt, info + " c>s", kKeyBytes);
    Bytes to_client = hkdf_sha256(secret_, salt, info + " s>c", kKeyBytes);
    keys_.send = client ? to_server : to_client;
    keys_.receive = client ? to_client : to_server;
    step_ = Step::Done;
}

void Handshake::fail(Failure failure, std::string why) {
    failure_ = failure;
    error_ = std::move(why);
    step_ = Step::Failed;
    input_.clear();
}

void Handshake::raise() const {
    if (failure_ == Failure::Version) throw VersionError(error_);
    if (failure_ == Failure::Auth) throw AuthError(error_);
    throw LinkError("the link handshake has not failed");
}

const SessionKeys& Handshake::keys() const {
    PPMPI_ENFORCE(step_ == Step::Done, "link keys asked for before the handshake is done");
    return keys_;
}

}  // namespace ppmpi::link
