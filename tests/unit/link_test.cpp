// The remote-server link below its transport (link/): OpenSSL primitives against published test
// vectors, the handshake (handshake.hpp) driven with bytes, sealed frames (sealed_frames.hpp).
#include <catch2/catch.hpp>

#include <string>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/link/handshake.hpp"
#include "ppmpi/link/sealed_frames.hpp"

using namespace ppmpi;
using namespace ppmpi::link;

namespace {

std::string hex(std::string_view bytes) {
    static const char* digits = "0123456789abcdef";
    std::string out;
    for (char c : bytes) {
        out += digits[static_cast<unsigned char>(c) >> 4];
        out += digits[static_cast<unsigned char>(c) & 15];
    }
    return out;
}

std::string unhex(std::string_view text) {
    std::string out;
    for (std::size_t i = 0; i + 1 < text.size(); i += 2)
        out += static_cast<char>(std::stoi(std::string(text.substr(i, 2)), nullptr, 16));
    return out;
}

// Passes each side's output to the other, `chunk` bytes at a time, until neither has any.
void pump(Handshake& client, Handshake& server, std::size_t chunk = 1 << 20) {
    for (int round = 0; round < 10; ++round) {
        bool moved = false;
        for (auto [from, to] : {std::pair{&client, &server}, std::pair{&server, &client}}) {
            std::string out = from->take_output();
            moved |= !out.empty();
            for (std::size_t at = 0; at < out.size(); at += chunk)
                to->feed(std::string_view(out).substr(at, chunk));
        }
        if (!moved) return;
    }
}

Handshake client(std::string secret) { return {Handshake::Role::Client, std::move(secret)}; }
Handshake server(std::string secret) { return {Handshake::Role::Server, std::move(secret)}; }

}  // namespace

TEST_CASE("link crypto: HMAC-SHA256 and HKDF-SHA256 match RFC 4231 and RFC 5869", "[link]") {
    CHECK(hex(hmac_sha256("Jefe", "what do ya want for nothing?")) ==
          "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
    std::string okm = hkdf_sha256(std::string(22, '\x0b'), unhex("000102030405060708090a0b0c"),
                                  unhex("f0f1f2f3f4f5f6f7f8f9"), 42);
    CHECK(hex(okm) ==
          "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865");
    CHECK(same_bytes("abc", "abc"));
    CHECK_FALSE(same_bytes("abc", "abd"));
    CHECK_FALSE(same_bytes("abc", "ab"));
    CHECK(random_bytes(32) != random_bytes(32));
}

TEST_CASE("link crypto: AES-256-GCM matches a NIST vector and detects any change", "[link]") {
    // NIST GCM test vector (gcmEncryptExtIV256, Count 0 with 16-byte plaintext).
    std::string key = unhex("31bdadd96698c204aa9ce1448ea94ae1fb4a9a0b3c9d773b51bb1822666b8f22");
    std::string iv = unhex("0d18e06c7c725ac9e362e1ce");
    std::string data = unhex("2db5168e932556f8089a0622981d017d");
    char tag[kTagBytes];
    seal_in_place(key, iv, "", data.data(), data.size(), tag);
    CHECK(hex(data) == "fa4362189661d163fcd6a56d8bf0405a");
    CHECK(hex(std::string_view(tag, kTagBytes)) == "d636ac1bbedd5cc3ee727dc2ab4a9489");
    std::string copy = data;
    CHECK(open_in_place(key, iv, "", copy.data(), copy.size(), tag));
    CHECK(hex(copy) == "2db5168e932556f8089a0622981d017d");
    copy = data;
    copy[3] ^= 1;
    CHECK_FALSE(open_in_place(key, iv, "", copy.data(), copy.size(), tag));
    copy = data;
    CHECK_FALSE(open_in_place(key, iv, "other aad", copy.data(), copy.size(), tag));
}

TEST_CASE("link handshake: the same secret gives both sides matching keys", "[link]") {
    for (std::size_t chunk : {std::size_t{1}, std::size_t{7}, std::size_t{1} << 20}) {
        Handshake c = client("s3cret"), s = server("s3cret");
        pump(c, s, chunk);
        REQUIRE(c.done());
        REQUIRE(s.done());
        CHECK(c.keys().send == s.keys().receive);
        CHECK(c.keys().receive == s.keys().send);
        CHECK(c.keys().send != c.keys().receive);
        CHECK(c.keys().send.size() == kKeyBytes);
    }
    Handshake open_client = client(""), open_server = server("");  // loopback, no secret
    pump(open_client, open_server);
    CHECK(open_client.done());
    CHECK(open_client.keys().send == open_server.keys().receive);
    Handshake c1 = client("s"), s1 = server("s"), c2 = client("s"), s2 = server("s");
    pump(c1, s1);
    pump(c2, s2);
    CHECK(c1.keys().send != c2.keys().send);  // fresh nonces: new keys every connection
}

TEST_CASE("link handshake: a wrong secret is refused on both sides", "[link]") {
    Handshake c = client("right"), s = server("wrong");
    pump(c, s);
    CHECK(s.failure() == Handshake::Failure::Auth);
    CHECK(s.error() == "the client sent a wrong secret");
    CHECK(c.failure() == Handshake::Failure::Auth);
    CHECK_THROWS_AS(c.raise(), AuthError);
    CHECK_THROWS_WITH(c.raise(), Catch::Contains("refused the secret"));
}

TEST_CASE("link handshake: a server that accepts without knowing the secret is refused",
          "[link]") {
    Handshake c = client("secret"), s = server("secret");
    std::string hello = s.take_output();
    c.feed(hello);
    c.take_output();  // its proof, which an impostor cannot check anyway
    c.feed("Y" + std::string(kDigestBytes, 'x'));
    CHECK(c.failure() == Handshake::Failure::Auth);
    CHECK_THROWS_WITH(c.raise(), Catch::Contains("could not prove it knows the secret"));
}

TEST_CASE("link handshake: another version or another protocol is named", "[link]") {
    Handshake s = server("secret");
    std::string old_hello = "PPMPIR02" + std::string(kNonceBytes, 'n');
    CHECK(s.feed(old_hello + "more") == kHelloBytes);  // nothing read past the step
    CHECK(s.failure() == Handshake::Failure::Version);
    CHECK_THROWS_AS(s.raise(), VersionError);
    CHECK_THROWS_WITH(s.raise(), Catch::Contains("version 2, this side version 4"));
    Handshake s2 = server("secret");
    s2.feed("GET / HTTP/1.1\r\n" + std::string(kHelloBytes, 'x'));
    CHECK_THROWS_WITH(s2.raise(), Catch::Contains("not a ppmpi client or server") &&
                                      Catch::Contains("GET / HT"));
}

TEST_CASE("link handshake: nothing past the handshake is consumed", "[link]") {
    Handshake c = client("k"), s = server("k");
    s.feed(c.take_output());
    c.feed(s.take_output());
    std::string proof = c.take_output();
    CHECK(s.feed(proof + "first frame") == proof.size());
    CHECK(s.done());
    CHECK(s.wanted() == 0);
}

TEST_CASE("sealed frames: round trip, in any pieces, and in place", "[link]") {
    std::string key = random_bytes(kKeyBytes);
    FrameSealer sealer(key);
    FrameOpener opener(key, 1 << 20);
    std::string wire = sealer.seal("one");  // one statement each: the order numbers them
    wire += sealer.seal("");
    wire += sealer.seal(std::string(5000, 'z'));
    std::string big(100000, 'b');
    FrameSealer::Wrapping wrap = sealer.seal_in_place(big.data(), big.size());
    CHECK(big != std::string(100000, 'b'));  // encrypted where it lies
    wire += std::string(wrap.header.data(), wrap.header.size()) + big +
            std::string(wrap.tag.data(), wrap.tag.size());
    for (std::size_t at = 0; at < wire.size(); at += 333)
        opener.feed(std::string_view(wire).substr(at, 333));
    CHECK(opener.next() == "one");
    CHECK(opener.next() == "");
    CHECK(opener.next() == std::string(5000, 'z'));
    CHECK(opener.next() == std::string(100000, 'b'));
    CHECK_FALSE(opener.next().has_value());
    CHECK(opener.opened() == 4);
}

TEST_CASE("sealed frames: altered, replayed, reordered or foreign frames end the link",
          "[link]") {
    std::string key = random_bytes(kKeyBytes);
    FrameSealer sealer(key);
    std::string first = sealer.seal("first"), second = sealer.seal("second");
    SECTION("altered") {
        FrameOpener opener(key, 1024);
        first[6] ^= 0x20;
        CHECK_THROWS_AS(opener.feed(first), AuthError);
        CHECK_THROWS_AS(opener.feed(second), LinkError);  // broken from then on
    }
    SECTION("replayed") {
        FrameOpener opener(key, 1024);
        opener.feed(first);
        CHECK_THROWS_AS(opener.feed(first), AuthError);
    }
    SECTION("reordered") {
        FrameOpener opener(key, 1024);
        CHECK_THROWS_AS(opener.feed(second), AuthError);
    }
    SECTION("sealed under another key") {
        FrameOpener opener(random_bytes(kKeyBytes), 1024);
        CHECK_THROWS_AS(opener.feed(first), AuthError);
    }
}

TEST_CASE("sealed frames: a length above the bound is refused before it is read", "[link]") {
    FrameOpener opener(random_bytes(kKeyBytes), 1000);
    CHECK_THROWS_WITH(opener.feed(std::string("\x7f\xff\xff\xff", 4)),
                      Catch::Contains("exceeds the bound of 1000"));
}
