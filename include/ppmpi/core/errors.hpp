// ppmpi/core/errors.hpp: the two kinds of error (README, "What happens when things fail").
//  - Recoverable failures are typed exceptions derived from PpmpiError; the bindings turn them
//    into Python exceptions.
//  - Broken invariants use PPMPI_ENFORCE, which throws InternalError naming file:line.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>

namespace ppmpi {

class PpmpiError : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

// A frame or message that does not decode: a peer speaking another version, or corruption.
class ProtocolError : public PpmpiError {
  public:
    using PpmpiError::PpmpiError;
};

// An MPI call failed (error code already turned into text).
class MpiError : public PpmpiError {
  public:
    using PpmpiError::PpmpiError;
};

// The server was destroyed; nothing more can be submitted or waited for.
class DestroyedError : public PpmpiError {
  public:
    using PpmpiError::PpmpiError;
};

// A job id the server does not know (never submitted, or its result was already taken).
class UnknownJobError : public PpmpiError {
  public:
    using PpmpiError::PpmpiError;
};

// The link to a remote peer broke, or the peer broke the link's protocol (link/).
class LinkError : public PpmpiError {
  public:
    using PpmpiError::PpmpiError;
};

// The peer does not know the secret, or a frame failed its authentication (forged, altered,
// replayed or reordered).
class AuthError : public LinkError {
  public:
    using LinkError::LinkError;
};

// The peer speaks another version of the link protocol, or is not ppmpi at all.
class VersionError : public LinkError {
  public:
    using LinkError::LinkError;
};

class InternalError : public std::logic_error {
  public:
    using std::logic_error::logic_error;
};

namespace detail {
template <class... Parts> std::string concat(const Parts&... parts) {
    std::ostringstream out;
    (out << ... << parts);
    return out.str();
}
}  // namespace detail

}  // namespace ppmpi

#define PPMPI_ENFORCE(cond, ...)                                                              \
    do {                                                                                      \
        if (!(cond))                                                                          \
            throw ::ppmpi::InternalError(::ppmpi::detail::concat(                             \
                __FILE__, ":", __LINE__, ": ", #cond, " failed: ", __VA_ARGS__));             \
    } while (0)
