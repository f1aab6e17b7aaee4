// _core's door into link/ for python/ppmpi/remote/auth.py: the handshake, driven by Python's
// socket code (every later byte is the dispatcher's, link_stream.hpp).
#include <pybind11/pybind11.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/link/handshake.hpp"

namespace py = pybind11;

namespace ppmpi {

namespace {

const char* failure_name(link::Handshake::Failure failure) {
    switch (failure) {
        case link::Handshake::Failure::Auth: return "auth";
        case link::Handshake::Failure::Version: return "version";
        default: return "";
    }
}

void bind_handshake(py::module_& m) {
    using link::Handshake;
    py::class_<Handshake>(m, "LinkHandshake")
        .def(py::init([](bool client, py::bytes secret) {
            return Handshake(client ? Handshake::Role::Client : Handshake::Role::Server, secret);
        }))
        .def("take_output", [](Handshake& h) { return py::bytes(h.take_output()); })
        .def("feed", [](Handshake& h, py::bytes data) { return h.feed(std::string(data)); })
        .def("wanted", &Handshake::wanted)
        .def("done", &Handshake::done)
        .def("failure", [](const Handshake& h) { return failure_name(h.failure()); })
        .def("error", &Handshake::error)
        .def("keys", [](const Handshake& h) {
            return py::make_tuple(py::bytes(h.keys().send), py::bytes(h.keys().receive));
        });
}

}  // namespace

// The link's errors become ppmpi.remote.auth's own exceptions (defined in Python so that
// importing ppmpi needs no _core), most derived first.
static void raise_as(const char* name, const std::exception& e) {
    py::object kind = py::module_::import("ppmpi.remote.auth").attr(name);
    PyErr_SetString(kind.ptr(), e.what());
}

void bind_link(py::module_& m) {
    py::register_exception_translator([](std::exception_ptr error) {
        try {
            if (error) std::rethrow_exception(error);
        } catch (const VersionError& e) {
            raise_as("VersionError", e);
        } catch (const AuthError& e) {
            raise_as("AuthError", e);
        } catch (const LinkError& e) {
            raise_as("LinkError", e);
        }
    });
    bind_handshake(m);
}

}  // namespace ppmpi
