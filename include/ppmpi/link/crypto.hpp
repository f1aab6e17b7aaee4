// ppmpi/link/crypto.hpp: the primitives the link to remote servers needs, each a thin call into
// OpenSSL's libcrypto (nothing here computes a digest or a cipher itself).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace ppmpi::link {

using Bytes = std::string;

constexpr std::size_t kDigestBytes = 32;  // SHA-256
constexpr std::size_t kKeyBytes = 32;     // AES-256
constexpr std::size_t kTagBytes = 16;     // GCM
constexpr std::size_t kIvBytes = 12;      // GCM's 96-bit nonce

// `count` bytes from OpenSSL's CSPRNG; LinkError if it cannot deliver.
Bytes random_bytes(std::size_t count);

Bytes hmac_sha256(std::string_view key, std::string_view message);

// Equal contents, in time that depends only on the lengths (CRYPTO_memcmp).
bool same_bytes(std::string_view a, std::string_view b);

// HKDF-SHA256 (RFC 5869): `length` bytes of key from `secret`, `salt` and `info`.
Bytes hkdf_sha256(std::string_view secret, std::string_view salt, std::string_view info,
                  std::size_t length);

// AES-256-GCM over one frame, in place: `data` is encrypted (or decrypted) where it lies, so a
// large array is never copied for it. `iv` is kIvBytes, `tag` kTagBytes; `aad` is authenticated
// but not encrypted. open_in_place returns false (and leaves garbage in `data`) if the tag does
// not match: the frame was altered, or sealed under another key or iv. With `from`,
// seal_in_place encrypts from there into `data` instead (memory the caller may not change).
void seal_in_place(std::string_view key, std::string_view iv, std::string_view aad, char* data,
                   std::size_t size, char* tag, const char* from = nullptr);
bool open_in_place(std::string_view key, std::string_view iv, std::string_view aad, char* data,
                   std::size_t size, const char* tag);

}  // namespace ppmpi::link
