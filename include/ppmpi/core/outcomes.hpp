// ppmpi/core/outcomes.hpp: how a job ended. One declared table, read by everything that names
// an outcome: the C++ enum below, Python (bindings.cpp exports it as _core.OUTCOMES, from which
// python/ppmpi/_serialize.py takes its constants) and the wire (the code is the byte a
// ppmpi-server sends in its RESULT frame, python/ppmpi/_wire.py). Codes are dense from 0 and
// never reused for another meaning.
#pragma once

#include <cstdint>
#include <iterator>

// X(name, code, what the JobOutcome carries)
#define PPMPI_OUTCOMES(X)                                                                    \
    X(Ok, 0, "payload: the pickled (result, output)")                                        \
    X(RemoteError, 1, "payload: the pickled exception report from the worker")               \
    X(Destroyed, 2, "the server was destroyed before the job completed")                     \
    X(WorkerLost, 3, "message: which workers the job took down")                             \
    X(Timeout, 4, "the job ran past its timeout")                                            \
    X(Cancelled, 5, "job.cancel() ended it")                                                 \
    X(NoWorkers, 6, "the pool lost every worker and could not replace them (message: why)")

namespace ppmpi {

enum class Outcome : std::uint8_t {
#define PPMPI_OUTCOME_ENUM(name, code, what) name = code,
    PPMPI_OUTCOMES(PPMPI_OUTCOME_ENUM)
#undef PPMPI_OUTCOME_ENUM
};

struct OutcomeName {
    Outcome outcome;
    const char* name;
};
constexpr OutcomeName kOutcomeNames[] = {
#define PPMPI_OUTCOME_NAME(name, code, what) {Outcome::name, #name},
    PPMPI_OUTCOMES(PPMPI_OUTCOME_NAME)
#undef PPMPI_OUTCOME_NAME
};
constexpr int kOutcomeCount = static_cast<int>(std::size(kOutcomeNames));

constexpr bool outcome_codes_dense() {
    for (int i = 0; i < kOutcomeCount; ++i)
        if (static_cast<int>(kOutcomeNames[i].outcome) != i) return false;
    return true;
}
static_assert(outcome_codes_dense(), "outcome codes run 0, 1, 2, ... in table order");

}  // namespace ppmpi
