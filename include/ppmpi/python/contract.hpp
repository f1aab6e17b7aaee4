// ppmpi/python/contract.hpp: what _core exports so that Python never writes down again what C++
// declares (outcome codes, payload bound, defaults, the taken outcome's fields, the destroyed
// error's type); src/python/contract_bindings.cpp says which is which.
#pragma once

#include <pybind11/pybind11.h>

#include <string>

namespace ppmpi {

// Adds the contract to the module; after PpmpiError is registered.
void bind_contract(pybind11::module_& m);

// PoolHandle.take's result: TakenOutcome(outcome, payload, message, worker, seconds, buffers).
pybind11::object make_taken_outcome(int outcome, pybind11::bytes payload,
                                    const std::string& message, const std::string& worker,
                                    double seconds, pybind11::object buffers);

}  // namespace ppmpi
