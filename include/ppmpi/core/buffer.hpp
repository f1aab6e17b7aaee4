// ppmpi/core/buffer.hpp: a block of bytes that travels beside a message, never copied on the way.
//
// Large arrays in job arguments and results are pickled out-of-band (pickle protocol 5): the
// pickle stream stays small and each large buffer becomes a Buffer. A Buffer points at memory
// that someone else owns (a numpy array on the sending side, memory the transport allocated on
// the receiving side) and keeps that owner alive through `owner` until every MPI send from it
// has completed and every Python object built on it has gone.
#pragma once

#include <cstddef>
#include <memory>
#include <string_view>
#include <vector>

namespace ppmpi {

struct Buffer {
    char* data = nullptr;
    std::size_t size = 0;
    std::shared_ptr<void> owner;  // keeps `data` valid; may be shared by several Buffers

    // `size` bytes of uninitialised memory. Large blocks are reused once freed (buffer.cpp:
    // fresh pages fault in slower than the data arrives).
    static Buffer allocate(std::size_t size);
    // A copy of `bytes` (tests and small messages).
    static Buffer copy_of(std::string_view bytes);

    std::string_view view() const { return {data, size}; }
};

using Buffers = std::vector<Buffer>;

// Process-wide: glibc keeps freed memory for reuse (no mmap'd chunks, heap trimmed only above
// 512 MiB free), because large in-band payloads come and go with every job and fresh pages
// fault in slower than the data is copied (a 64 MiB echo: 595 ms, 379 ms with the heap
// reused). Called at start-up by ppmpi-worker and by the _core module;
// PPMPI_KEEP_FREED_MEMORY=0 leaves malloc as it is.
void keep_freed_memory_for_reuse();
bool keeps_freed_memory(); // false with PPMPI_KEEP_FREED_MEMORY=0

// Call once MPI has started in this process (and forked its helper): makes this process's
// anonymous memory that is mostly in use (the malloc heap, CPython's arenas) writable again at
// once, with madvise(MADV_POPULATE_WRITE), contents unchanged.
// Why: a fork (Open MPI forks its runtime daemon at MPI start in a singleton) leaves every page
// copy-on-write, and each first write after it takes a page fault, as does each page of a
// free chunk never touched since start-up: a fresh master's first 1,000 jobs took ~215 page
// faults, at ~5 µs each on the test VM (perf's page-faults event), against ~0 per 1,000 later.
// Returns the bytes covered (0: setting off or kernel older than 5.14).
std::size_t prefault_written_memory();

}  // namespace ppmpi
