#include "ppmpi/core/functions.hpp"

#include "ppmpi/core/errors.hpp"

namespace ppmpi {

void FunctionStore::acquire(const std::string& key, Bytes bundle) {
    auto it = entries_.find(key);
    if (it == entries_.end()) {
        if (bundle.empty())
            throw ProtocolError("function " + key + " is not cached and no bundle was given");
        it = entries_.emplace(key, Entry{std::move(bundle), 0}).first;
    }
    ++it->second.users;
}

void FunctionStore::release(const std::string& key) {
    auto it = entries_.find(key);
    PPMPI_ENFORCE(it != entries_.end(), "release of unknown function ", key);
    if (--it->second.users == 0) entries_.erase(it);
}

const Bytes& FunctionStore::bundle(const std::string& key) const {
    auto it = entries_.find(key);
    PPMPI_ENFORCE(it != entries_.end(), "no bundle for function ", key);
    return it->second.bundle;
}

bool KnownFunctions::knows(PeerId worker, const std::string& key) const {
    auto it = known_.find(worker);
    return it != known_.end() && it->second.count(key) != 0;
}

}  // namespace ppmpi
