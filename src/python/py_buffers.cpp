#include "ppmpi/python/py_buffers.hpp"

#include <mutex>
#include <vector>

namespace py = pybind11;

namespace ppmpi {
namespace {

// Exports whose last Buffer is gone, waiting for a thread with the GIL.
struct ReleaseQueue {
    std::mutex mutex;
    std::vector<Py_buffer*> exports;
    bool scheduled = false;  // a pending call will drain it
};

ReleaseQueue& release_queue() {
    static auto* queue = new ReleaseQueue();  // never destroyed: deleters may run at exit
    return *queue;
}

int release_pending(void*) {
    release_python_buffers();
    return 0;
}

// Queued from any thread (the MPI thread, GIL not held), and drained soon by the main thread
// between two bytecodes (Py_AddPendingCall needs no GIL): without it, the object a job's
// argument came from (a large array) lived on after the job until the next submit or take,
// for good if none came. A failed scheduling (the queue of pending calls is full, or Python
// is ending) is tried again at the next release; the calls above drain it meanwhile.
void queue_release(Py_buffer* view) {
    ReleaseQueue& queue = release_queue();
    std::lock_guard<std::mutex> lock(queue.mutex);
    queue.exports.push_back(view);
    if (queue.scheduled || !Py_IsInitialized()) return;
    queue.scheduled = Py_AddPendingCall(&release_pending, nullptr) == 0;
}

// What a received buffer looks like from Python.
struct HeldBuffer {
    Buffer buffer;
};

// Registered on first use, in whichever binary this is (_core or ppmpi-worker); module_local so
// the two never clash when a job imports ppmpi inside ppmpi-worker.
void ensure_held_buffer_type() {
    if (py::detail::get_type_info(typeid(HeldBuffer))) return;
    // Never destroyed: a static py::object would be released after the interpreter is gone.
    static auto* scope =
        new py::object(py::module_::import("types").attr("ModuleType")("ppmpi._buffers"));
    py::class_<HeldBuffer>(*scope, "Buffer", py::buffer_protocol(), py::module_local())
        .def_buffer([](HeldBuffer& held) {
            return py::buffer_info(held.buffer.data, 1,
                                   py::format_descriptor<std::uint8_t>::format(),
                                   static_cast<py::ssize_t>(held.buffer.size), false);
        })
        .def("__len__", [](const HeldBuffer& held) { return held.buffer.size; });
}

}  // namespace

Buffers buffers_from_python(py::handle items) {
    Buffers buffers;
    for (py::handle item : items) {
        auto* view = new Py_buffer();
        if (PyObject_GetBuffer(item.ptr(), view, PyBUF_C_CONTIGUOUS) != 0) {
            delete view;
            throw py::error_already_set();
        }
        Buffer buffer;
        buffer.data = static_cast<char*>(view->buf);
        buffer.size = static_cast<std::size_t>(view->len);
        buffer.owner = std::shared_ptr<void>(
            view, [](void* v) { queue_release(static_cast<Py_buffer*>(v)); });
        buffers.push_back(std::move(buffer));
    }
    return buffers;
}

py::list buffers_to_python(Buffers buffers) {
    py::list out;
    if (buffers.empty()) return out;
    ensure_held_buffer_type();
    for (Buffer& buffer : buffers) out.append(py::cast(HeldBuffer{std::move(buffer)}));
    return out;
}

void release_python_buffers() {
    std::vector<Py_buffer*> exports;
    {
        ReleaseQueue& queue = release_queue();
        std::lock_guard<std::mutex> lock(queue.mutex);
        exports.swap(queue.exports);
        queue.scheduled = false;
    }
    for (Py_buffer* view : exports) {
        PyBuffer_Release(view);
        delete view;
    }
}

}  // namespace ppmpi
