// _core's door into link/ for python/ppmpi/_auth.py: the handshake driven by Python's socket
// code, and frames sealed and opened in place in Python's own buffers (GIL released: a 64 MiB
// array takes tens of milliseconds).
#include <pybind11/pybind11.h>

#include "ppmpi/core/errors.hpp"
#include "ppmpi/link/handshake.hpp"
#include "ppmpi/link/sealed_frames.hpp"

namespace py = pybind11;

namespace ppmpi {

namespace {

// A writable contiguous buffer's bytes (a bytearray, or a numpy array's memory).
std::pair<char*, std::size_t> writable(const py::buffer& buffer) {
    py::buffer_info info = buffer.request(true);
    PPMPI_ENFORCE(info.ndim <= 1 && (info.ndim == 0 || info.strides[0] == info.itemsize),
                  "a contiguous buffer");
    return {static_cast<char*>(info.ptr), static_cast<std::size_t>(info.size * info.itemsize)};
}

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

void bind_frames(py::module_& m) {
    py::class_<link::FrameSealer>(m, "LinkSealer")
        .def(py::init([](py::bytes key) { return link::FrameSealer(key); }))
        .def("seal", [](link::FrameSealer& s, py::buffer body) {  // -> (header, tag)
            auto [data, size] = writable(body);
            link::FrameSealer::Wrapping wrap;
            {
                py::gil_scoped_release unlocked;
                wrap = s.seal_in_place(data, size);
            }
            return py::make_tuple(py::bytes(wrap.header.data(), wrap.header.size()),
                                  py::bytes(wrap.tag.data(), wrap.tag.size()));
        });
    py::class_<link::InPlaceOpener>(m, "LinkOpener")
        .def(py::init([](py::bytes key) { return link::InPlaceOpener(key); }))
        .def_static("body_size", [](py::bytes header, std::size_t max_body) {
            return link::InPlaceOpener::body_size(std::string(header), max_body);
        })
        .def("open", [](link::InPlaceOpener& o, py::bytes header, py::buffer body,
                        py::bytes tag) {
            auto [data, size] = writable(body);
            std::string head(header), mac(tag);
            PPMPI_ENFORCE(mac.size() == link::kTagBytes, "a tag of ", link::kTagBytes, " bytes");
            py::gil_scoped_release unlocked;
            o.open(head, data, size, mac.data());
        });
}

}  // namespace

// The link's errors become ppmpi._auth's own exceptions (defined in Python so that importing
// ppmpi needs no _core), most derived first.
static void raise_as(const char* name, const std::exception& e) {
    py::object kind = py::module_::import("ppmpi._auth").attr(name);
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
    bind_frames(m);
}

}  // namespace ppmpi
