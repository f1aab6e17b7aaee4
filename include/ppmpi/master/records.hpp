// ppmpi/master/records.hpp: what the dispatcher keeps of each worker (of each pool: pool.hpp).
#pragma once

#include "ppmpi/core/ids.hpp"
#include "ppmpi/core/process.hpp"
#include "ppmpi/master/pool_types.hpp"

#include <optional>
#include <string>

namespace ppmpi {

// Waiting (spawned or a world rank; no Hello yet, or no pool yet) → Active (gets jobs) →
// Retiring (finishes its jobs) → Leaving (Shutdown) → Gone (Goodbye, lost, no launch).
enum class WorkerPhase { Waiting, Active, Retiring, Leaving, Gone };

struct WorkerRecord {
    PeerId peer = -1;
    std::optional<PoolId> pool;
    WorkerPhase phase = WorkerPhase::Waiting;
    bool hello = false, goodbye = false, released = false;
    bool local = false;    // its process runs on this host (counted in local_workers_)
    bool linked = false;   // a remote server's slot (link_transport.hpp)
    bool excused = false;  // silent with many others: given one more timeout (faults)
    bool settled = false;  // Gone, and its process's end was waited for before a spawn
    ProcessIdentity process;
    std::string label;
};

}  // namespace ppmpi
