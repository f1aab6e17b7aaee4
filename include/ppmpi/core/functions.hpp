// ppmpi/core/functions.hpp: pp's "transparent cache" — a function crosses to each worker once.
//
// Bundles (a pickled function with its depfuncs and module list) are keyed by a digest of their
// bytes, made on the Python side. FunctionStore holds, on the master, the bundles that queued or
// running jobs still need (reference counted, so a requeued job can be sent to a fresh worker).
// KnownFunctions records which keys each worker already holds, so later jobs carry only the key.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <unordered_map>

#include "ppmpi/core/ids.hpp"
#include "ppmpi/core/protocol.hpp"

namespace ppmpi {

class FunctionStore {
  public:
    // One more job needs `key`. `bundle` is stored the first time; later it may be empty.
    // Throws ProtocolError if the key is new and no bundle is given.
    void acquire(const std::string& key, Bytes bundle);
    // A job that needed `key` is over; the bundle is dropped with the last such job.
    void release(const std::string& key);
    const Bytes& bundle(const std::string& key) const;
    bool contains(const std::string& key) const { return entries_.count(key) != 0; }
    std::size_t size() const { return entries_.size(); }

  private:
    struct Entry {
        Bytes bundle;
        std::size_t users = 0;
    };
    std::unordered_map<std::string, Entry> entries_;
};

class KnownFunctions {
  public:
    bool knows(PeerId worker, const std::string& key) const;
    void learn(PeerId worker, const std::string& key) { known_[worker].insert(key); }
    void forget_worker(PeerId worker) { known_.erase(worker); }

  private:
    std::unordered_map<PeerId, std::set<std::string>> known_;
};

}  // namespace ppmpi
