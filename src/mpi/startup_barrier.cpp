#include "ppmpi/mpi/startup_barrier.hpp"

#include <pmix.h>

#include <cstdlib>
#include <string>

#include "ppmpi/core/log.hpp"

namespace ppmpi {

StartupBarrier::StartupBarrier() {
    if (!std::getenv("PMIX_NAMESPACE")) return;  // not started by a PMIx launcher
    pmix_proc_t self;
    pmix_status_t rc = PMIx_Init(&self, nullptr, 0);
    if (rc != PMIX_SUCCESS) {
        log_debug(std::string("no start-up barrier: PMIx_Init: ") + PMIx_Error_string(rc));
        return;
    }
    open_ = true;
    rc = PMIx_Fence(nullptr, 0, nullptr, 0);  // every process of this job (namespace)
    if (rc != PMIX_SUCCESS)
        log_debug(std::string("no start-up barrier: PMIx_Fence: ") + PMIx_Error_string(rc));
}

StartupBarrier::~StartupBarrier() {
    if (open_) PMIx_Finalize(nullptr, 0);
}

}  // namespace ppmpi
