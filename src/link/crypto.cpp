#include "ppmpi/link/crypto.hpp"

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <algorithm>
#include <climits>
#include <memory>

#include "ppmpi/core/errors.hpp"

namespace ppmpi::link {

namespace {

const unsigned char* bytes_of(std::string_view text) {
    return reinterpret_cast<const unsigned char*>(text.data());
}

struct CipherFree {
    void operator()(EVP_CIPHER_CTX* ctx) const { EVP_CIPHER_CTX_free(ctx); }
};
using Cipher = std::unique_ptr<EVP_CIPHER_CTX, CipherFree>;

// OpenSSL takes lengths as int: a frame (up to 2 GiB) goes through in parts below INT_MAX.
constexpr std::size_t kPart = std::size_t{1} << 30;

Cipher gcm(std::string_view key, std::string_view iv, bool encrypt) {
    PPMPI_ENFORCE(key.size() == kKeyBytes && iv.size() == kIvBytes, "AES-256-GCM key/iv size");
    Cipher ctx(EVP_CIPHER_CTX_new());
    if (!ctx || EVP_CipherInit_ex(ctx.get(), EVP_aes_256_gcm(), nullptr, bytes_of(key),
                                  bytes_of(iv), encrypt ? 1 : 0) != 1)
        throw LinkError("OpenSSL could not start AES-256-GCM");
    return ctx;
}

// AAD, then the data (from `in` into `data`, or in place), part by part.
bool run(EVP_CIPHER_CTX* ctx, std::string_view aad, char* data, std::size_t size,
         const char* in = nullptr) {
    int out = 0;
    if (!aad.empty() && EVP_CipherUpdate(ctx, nullptr, &out, bytes_of(aad),
                                         static_cast<int>(aad.size())) != 1)
        return false;
    for (std::size_t done = 0; done < size;) {
        int part = static_cast<int>(std::min(kPart, size - done));
        auto* at = reinterpret_cast<unsigned char*>(data + done);
        auto* from = in ? reinterpret_cast<const unsigned char*>(in + done) : at;
        if (EVP_CipherUpdate(ctx, at, &out, from, part) != 1 || out != part) return false;
        done += static_cast<std::size_t>(part);
    }
    return true;
}

}  // namespace

Bytes random_bytes(std::size_t count) {
    Bytes out(count, '\0');
    if (count > INT_MAX ||
        RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(count)) != 1)
        throw LinkError("OpenSSL's random generator failed");
    return out;
}

Bytes hmac_sha256(std::string_view key, std::string_view message) {
    Bytes out(kDigestBytes, '\0');
    unsigned int size = 0;
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()), bytes_of(message),
              message.size(), reinterpret_cast<unsigned char*>(out.data()), &size) ||
        size != kDigestBytes)
        throw LinkError("OpenSSL's HMAC-SHA256 failed");
    return out;
}

bool same_bytes(std::string_view a, std::string_view b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

Bytes hkdf_sha256(std::string_view secret, std::string_view salt, std::string_view info,
                  std::size_t length) {
    std::unique_ptr<EVP_KDF, decltype(&EVP_KDF_free)> kdf(EVP_KDF_fetch(nullptr, "HKDF", nullptr),
                                                          &EVP_KDF_free);
    std::unique_ptr<EVP_KDF_CTX, decltype(&EVP_KDF_CTX_free)> ctx(
        kdf ? EVP_KDF_CTX_new(kdf.get()) : nullptr, &EVP_KDF_CTX_free);
    auto text = [](std::string_view s) { return const_cast<char*>(s.data()); };
    char digest[] = "SHA256";
    OSSL_PARAM params[] = {
        OSSL_PARAM_construct_utf8_string(OSSL_KDF_PARAM_DIGEST, digest, 0),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_KEY, text(secret), secret.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, text(salt), salt.size()),
        OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_INFO, text(info), info.size()),
        OSSL_PARAM_construct_end()};
    Bytes out(length, '\0');
    if (!ctx || EVP_KDF_derive(ctx.get(), reinterpret_cast<unsigned char*>(out.data()), length,
                               params) != 1)
        throw LinkError("OpenSSL's HKDF-SHA256 failed");
    return out;
}

void seal_in_place(std::string_view key, std::string_view iv, std::string_view aad, char* data,
                   std::size_t size, char* tag, const char* from) {
    Cipher ctx = gcm(key, iv, true);
    unsigned char none[kTagBytes];  // GCM's final step writes nothing
    int out = 0;
    if (!run(ctx.get(), aad, data, size, from) || EVP_CipherFinal_ex(ctx.get(), none, &out) != 1 ||
        EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagBytes), tag) !=
            1)
        throw LinkError("OpenSSL's AES-256-GCM failed to seal a frame");
}

bool open_in_place(std::string_view key, std::string_view iv, std::string_view aad, char* data,
                   std::size_t size, const char* tag) {
    Cipher ctx = gcm(key, iv, false);
    Bytes expected(tag, kTagBytes);  // OpenSSL takes the tag as non-const
    unsigned char none[kTagBytes];
    int out = 0;
    return run(ctx.get(), aad, data, size) &&
           EVP_CIPHER_CTX_ctrl(ctx.get(), EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagBytes),
                               expected.data()) == 1 &&
           EVP_CipherFinal_ex(ctx.get(), none, &out) == 1;
}

}  // namespace ppmpi::link
