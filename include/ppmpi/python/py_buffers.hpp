// ppmpi/python/py_buffers.hpp: pickle-5 out-of-band buffers between Python objects and Buffers,
// without copying their data. Compiled into both _core and ppmpi-worker; call with the GIL.
//
// Sending: a Buffer over a Python object's memory holds a buffer export of it (Py_buffer).
// The last Buffer is usually dropped by the thread that owns MPI, once its send completed, and
// that thread never takes the GIL (a job holding the GIL would stall heartbeats). So the
// export is only queued there, and released by the next call to release_python_buffers(),
// which the Python-facing entry points make, and a pending call (Py_AddPendingCall) soon after
// on the main thread.
//
// Receiving: each Buffer is handed to Python as an object with the buffer protocol (writable,
// so numpy arrays rebuilt on it are writable) that keeps the Buffer alive.
#pragma once

#include <pybind11/pybind11.h>

#include "ppmpi/core/buffer.hpp"

namespace ppmpi {

// One Buffer per item, each a C-contiguous object such as PickleBuffer.raw().
Buffers buffers_from_python(pybind11::handle items);
// A list of Python objects over the Buffers' memory.
pybind11::list buffers_to_python(Buffers buffers);
// Releases the exports of Buffers that nothing uses any more.
void release_python_buffers();

}  // namespace ppmpi
