// ppmpi/core/ids.hpp: how a worker is named. One id everywhere: the transport's peer (an MPI
// rank, a shared-memory ring, a remote server's slot) is also the worker the scheduler hands
// jobs to, the heartbeat monitor watches and the dispatcher keeps a record of.
#pragma once

#include <cstdint>

namespace ppmpi {

using PeerId = std::int64_t;

}  // namespace ppmpi
