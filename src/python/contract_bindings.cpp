// What Python and C++ must agree on, exported from the one place C++ declares each of them, so
// that python/ppmpi never writes them again (python/ppmpi/_core.pyi lists them):
//  - the outcome codes (core/outcomes.hpp): OUTCOMES {name: code} and the enum Outcome;
//  - the largest in-band payload (core/frame.hpp): MAX_PAYLOAD_BYTES;
//  - the defaults of the tunables C++ owns: DEFAULTS {name: value} (protocol.hpp's Welcome,
//    pool_types.hpp's PoolSpec); their environment variables are read in python/ppmpi/_tunables.py;
//  - what PoolHandle.take returns: TakenOutcome, a named tuple;
//  - C++'s DestroyedError raised as ppmpi.DestroyedServerError (errors.py), one type for users.
#include "ppmpi/python/contract.hpp"

#include <chrono>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/core/frame.hpp"
#include "ppmpi/core/outcomes.hpp"
#include "ppmpi/core/protocol.hpp"
#include "ppmpi/master/pool_types.hpp"

namespace py = pybind11;

namespace ppmpi {
namespace {

py::object& taken_outcome_type() {
    // Never destroyed: a py::object's destructor would run after the interpreter is gone.
    static auto* type = new py::object();
    return *type;
}

void bind_outcomes(py::module_& m) {
    py::dict codes;
    py::enum_<Outcome> outcome(m, "Outcome", "How a job ended (core/outcomes.hpp).");
    for (const OutcomeName& entry : kOutcomeNames) {
        codes[entry.name] = static_cast<int>(entry.outcome);
        outcome.value(entry.name, entry.outcome);
    }
    m.attr("OUTCOMES") = codes;
    taken_outcome_type() = py::module_::import("collections").attr("namedtuple")(
        "TakenOutcome", "outcome payload message worker seconds buffers");
    m.attr("TakenOutcome") = taken_outcome_type();
}

void bind_defaults(py::module_& m) {
    const Welcome welcome;
    const PoolSpec pool;
    py::dict defaults;
    defaults["heartbeat_ms"] = welcome.heartbeat_ms;
    defaults["master_timeout_ms"] = welcome.master_timeout_ms;
    defaults["worker_timeout_s"] =
        std::chrono::duration<double>(pool.worker_timeout).count();
    defaults["max_retries"] = pool.max_retries;
    defaults["slots_per_worker"] = pool.slots_per_worker;
    m.attr("DEFAULTS") = defaults;
    m.attr("MAX_PAYLOAD_BYTES") = kMaxPayloadBytes;
}

void bind_destroyed(py::module_& m) {
    // Never destroyed, as above; the class lives as long as the ppmpi.errors module anyway.
    static auto* destroyed =
        new py::object(py::module_::import("ppmpi.errors").attr("DestroyedServerError"));
    m.attr("DestroyedError") = *destroyed;
    // Registered after PpmpiError's translator, so tried before it (pybind11 tries the last
    // registered first).
    py::register_exception_translator([](std::exception_ptr thrown) {
        try {
            if (thrown) std::rethrow_exception(thrown);
        } catch (const DestroyedError& e) {
            PyErr_SetString(destroyed->ptr(), e.what());
        }
    });
}

}  // namespace

py::object make_taken_outcome(int outcome, py::bytes payload, const std::string& message,
                              const std::string& worker, double seconds, py::object buffers) {
    return taken_outcome_type()(outcome, std::move(payload), message, worker, seconds,
                                std::move(buffers));
}

void bind_contract(py::module_& m) {
    bind_outcomes(m);
    bind_defaults(m);
    bind_destroyed(m);
}

}  // namespace ppmpi
