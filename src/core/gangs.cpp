#include "ppmpi/core/gangs.hpp"

#include <algorithm>
#include <cstring>
#include <tuple>

namespace ppmpi {
namespace {

template <class T> void put(Bytes& out, T value) {
    char raw[sizeof(T)];
    std::memcpy(raw, &value, sizeof(T)); // little-endian hosts only (x86-64, aarch64)
    out.append(raw, sizeof(T));
}

} // namespace

Bytes pack_gang_parts(std::vector<std::optional<GangPart>>& parts, Buffers& buffers) {
    Bytes out = "PPG1";
    put<std::uint32_t>(out, static_cast<std::uint32_t>(parts.size()));
    for (auto& part : parts) {
        std::uint8_t state = !part ? 2 : part->status == ResultStatus::Ok ? 0 : 1;
        put<std::uint8_t>(out, state);
        put<std::uint64_t>(out, part ? part->payload.size() : 0);
        put<std::uint32_t>(out, part ? static_cast<std::uint32_t>(part->buffers.size()) : 0);
        if (!part) continue;
        out += part->payload;
        for (Buffer& buffer : part->buffers)
            buffers.push_back(std::move(buffer));
    }
    return out;
}

void Gangs::add_worker(PeerId worker, int domain, int rank) {
    if (domain < 0 || workers_.count(worker)) return;
    workers_[worker] = Member{domain, rank, std::nullopt};
    ++domain_sizes_[domain];
    dirty_ = true;
}

Gangs::Removal Gangs::remove_worker(PeerId worker) {
    Removal out;
    auto it = workers_.find(worker);
    if (it == workers_.end()) return out;
    std::optional<JobId> job = it->second.job;
    if (--domain_sizes_[it->second.domain] == 0) domain_sizes_.erase(it->second.domain);
    workers_.erase(it);
    dirty_ = true;
    if (job && runs_.count(*job)) {
        out.broken = job;
    } else if (job) {
        std::size_t nranks = nranks_.at(*job);
        out.unhold = drop(*job); // a reservation one short: the job waits for another
        requeue(*job, nranks);
    }
    return out;
}

void Gangs::enqueue(JobId job, std::size_t nranks) {
    queue_.push_back(job);
    nranks_[job] = nranks;
    dirty_ = true;
}

void Gangs::requeue(JobId job, std::size_t nranks) {
    queue_.push_front(job);
    nranks_[job] = nranks;
    dirty_ = true;
}

std::vector<PeerId> Gangs::drop(JobId job) {
    std::vector<PeerId> unhold;
    auto queued = std::find(queue_.begin(), queue_.end(), job);
    if (queued != queue_.end()) queue_.erase(queued);
    if (reserved_ == job) {
        for (PeerId worker : reservation_) {
            auto it = workers_.find(worker);
            if (it != workers_.end()) it->second.job.reset();
            unhold.push_back(worker);
        }
        reserved_.reset();
        reservation_.clear();
    }
    if (!runs_.count(job)) nranks_.erase(job);
    dirty_ = true;
    return unhold;
}

// The least loaded free workers of the domain where they are least loaded in all (ties: the
// lowest domain, the lowest ranks), in rank order; none if no domain has `nranks` free.
std::vector<PeerId> Gangs::pick(std::size_t nranks, const Load& load) const {
    std::map<int, std::vector<std::tuple<std::size_t, int, PeerId>>> free;
    for (const auto& [worker, member] : workers_)
        if (!member.job && domain_sizes_.at(member.domain) >= nranks)
            free[member.domain].emplace_back(load(worker), member.rank, worker);
    std::vector<std::tuple<std::size_t, int, PeerId>> best;
    std::size_t best_cost = 0;
    for (auto& [domain, candidates] : free) {
        if (candidates.size() < nranks) continue;
        std::sort(candidates.begin(), candidates.end());
        candidates.resize(nranks);
        std::size_t cost = 0;
        for (const auto& candidate : candidates)
            cost += std::get<0>(candidate);
        if (best.empty() || cost < best_cost) {
            best = candidates;
            best_cost = cost;
        }
    }
    std::sort(best.begin(), best.end(),
              [](const auto& a, const auto& b) { return std::get<1>(a) < std::get<1>(b); });
    std::vector<PeerId> out;
    for (const auto& candidate : best)
        out.push_back(std::get<2>(candidate));
    return out;
}

// A walk over the workers, only when something changed since the last attempt (a worker came
// or went, a job came or ended): not on every turn while a job waits for a domain to free up.
std::vector<PeerId> Gangs::reserve(const Load& load) {
    if (reserved_ || queue_.empty() || !dirty_) return {};
    dirty_ = false;
    JobId job = queue_.front();
    std::vector<PeerId> picked = pick(nranks_.at(job), load);
    if (picked.empty()) return {};
    queue_.pop_front();
    reserved_ = job;
    reservation_ = picked;
    for (PeerId worker : picked) workers_.at(worker).job = job;
    return picked;
}

std::optional<Gangs::Start> Gangs::start_ready(const Load& load) {
    if (!reserved_) return std::nullopt;
    for (PeerId worker : reservation_)
        if (load(worker) > 0) return std::nullopt;
    Start start{*reserved_, reservation_, {}};
    for (PeerId worker : reservation_) start.domain_ranks.push_back(workers_.at(worker).rank);
    Run& run = runs_[start.job];
    run.members = reservation_;
    run.parts.resize(reservation_.size());
    reserved_.reset();
    reservation_.clear();
    dirty_ = true;
    return start;
}

bool Gangs::member(JobId job, PeerId worker) const {
    auto run = runs_.find(job);
    return run != runs_.end() && std::find(run->second.members.begin(), run->second.members.end(),
                                           worker) != run->second.members.end();
}

bool Gangs::record(JobId job, PeerId worker, GangPart part) {
    Run& run = runs_.at(job);
    auto at = std::find(run.members.begin(), run.members.end(), worker);
    if (at == run.members.end()) return false;
    auto& slot = run.parts[static_cast<std::size_t>(at - run.members.begin())];
    if (slot) return false;
    slot = std::move(part);
    return ++run.answered == run.members.size();
}

bool Gangs::any_error(JobId job) const {
    auto run = runs_.find(job);
    if (run == runs_.end()) return false;
    return std::any_of(run->second.parts.begin(), run->second.parts.end(),
                       [](const auto& p) { return p && p->status != ResultStatus::Ok; });
}

std::pair<std::vector<PeerId>, std::vector<std::optional<GangPart>>> Gangs::end(JobId job) {
    auto run = runs_.find(job);
    nranks_.erase(job);
    dirty_ = true;
    if (run == runs_.end()) return {};
    for (PeerId worker : run->second.members) {
        auto it = workers_.find(worker);
        if (it != workers_.end()) it->second.job.reset();
    }
    auto out = std::make_pair(std::move(run->second.members), std::move(run->second.parts));
    runs_.erase(run);
    return out;
}

std::vector<JobId> Gangs::running_jobs() const {
    std::vector<JobId> out;
    for (const auto& [job, run] : runs_)
        out.push_back(job);
    return out;
}

std::optional<std::pair<JobId, std::size_t>> Gangs::unplaceable() const {
    if (queue_.empty()) return std::nullopt;
    std::size_t largest = 0;
    for (const auto& [domain, size] : domain_sizes_)
        largest = std::max(largest, size);
    std::size_t nranks = nranks_.at(queue_.front());
    if (nranks <= largest) return std::nullopt;
    return std::make_pair(queue_.front(), nranks);
}

std::vector<PeerId> Gangs::to_regroup(std::size_t count, const Load& load) const {
    std::vector<std::tuple<std::size_t, std::size_t, PeerId>> candidates;
    for (const auto& [worker, member] : workers_)
        if (!member.job || !runs_.count(*member.job))
            candidates.emplace_back(domain_sizes_.at(member.domain), load(worker), worker);
    std::sort(candidates.begin(), candidates.end());
    std::vector<PeerId> out;
    for (const auto& candidate : candidates) {
        if (out.size() == count) break;
        out.push_back(std::get<2>(candidate));
    }
    return out;
}

std::string Gangs::describe_domains() const {
    std::string out;
    for (const auto& [domain, size] : domain_sizes_) {
        if (!out.empty()) out += ", ";
        out += std::to_string(size) + (domain == 0 ? " (the mpirun world)" : "");
    }
    return out.empty() ? "none" : out;
}

} // namespace ppmpi
