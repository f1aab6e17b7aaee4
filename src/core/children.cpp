#include "ppmpi/core/children.hpp"

namespace ppmpi {

void Children::add(JobId child, PeerId owner, JobId parent) {
    children_[child] = Child{owner, parent, false};
    by_owner_[owner].insert(child);
}

const Children::Child* Children::find(JobId child) const {
    auto it = children_.find(child);
    return it == children_.end() ? nullptr : &it->second;
}

std::vector<JobId> Children::orphan(PeerId owner) {
    std::vector<JobId> out;
    auto it = by_owner_.find(owner);
    if (it == by_owner_.end()) return out;
    for (JobId child : it->second) {
        children_.at(child).orphaned = true;
        out.push_back(child);
    }
    by_owner_.erase(it);
    return out;
}

void Children::erase(JobId child) {
    auto it = children_.find(child);
    if (it == children_.end()) return;
    auto owned = by_owner_.find(it->second.owner);
    if (owned != by_owner_.end()) {
        owned->second.erase(child);
        if (owned->second.empty()) by_owner_.erase(owned);
    }
    helpers_.erase(child);
    children_.erase(it);
}

std::optional<PeerId> Children::take_helper(JobId child) {
    auto it = helpers_.find(child);
    if (it == helpers_.end()) return std::nullopt;
    PeerId helper = it->second;
    helpers_.erase(it);
    return helper;
}

} // namespace ppmpi
