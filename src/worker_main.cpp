// ppmpi-worker: a worker rank. Spawned by a master (python3 driver.py alone), or started by
// mpirun next to the driver (mpirun -np 1 python3 driver.py : -np N ppmpi-worker).
// The main thread hosts CPython and runs the jobs; the comm thread owns MPI.
#include <pybind11/embed.h>

#include <malloc.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "ppmpi/mpi_env.hpp"
#include "ppmpi/python_executor.hpp"
#include "ppmpi/worker.hpp"

namespace py = pybind11;

// Large buffers (job arguments and results) come and go with every job; from mmap, each one
// is fresh zeroed pages, and the page faults cost more than the copies (measured: a 64 MiB
// echo took 595 ms, 379 ms with the heap reused). So this process keeps freed memory for
// reuse: no mmap'd chunks, and the heap is trimmed only above 512 MiB free.
static void keep_freed_memory() {
    mallopt(M_MMAP_MAX, 0);
    mallopt(M_TRIM_THRESHOLD, 512 << 20);
}

int main(int argc, char** argv) {
    keep_freed_memory();
    for (int i = 1; i < argc; ++i) {
        if (std::strcmp(argv[i], "--help") == 0 || std::strcmp(argv[i], "-h") == 0) {
            std::cout << "ppmpi-worker: a ppmpi worker rank; started by ppmpi itself or by\n"
                         "  mpirun -np 1 python3 driver.py : -np N ppmpi-worker\n"
                         "It takes no options.\n";
            return 0;
        }
    }
    // The jobs import the ppmpi package in this process: tell it that it is inside a worker,
    // so it neither takes the process over as an mpirun rank nor starts a master.
    ::setenv("PPMPI_IN_WORKER", "1", 1);
    // mpirun forwards SIGUSR1 to every rank; it asks the master for statistics and must not
    // end a worker (its default action). Set before MPI starts its threads.
    std::signal(SIGUSR1, SIG_IGN);
    int status = 0;
    {
        py::scoped_interpreter interpreter;
        ppmpi::PythonExecutor executor;
        ppmpi::WorkerHost host(ppmpi::mpi_worker_environment());
        {
            py::gil_scoped_release released;  // the executor takes the GIL per call
            status = host.serve(executor);
        }
        // Flush what jobs printed outside their capture before the interpreter goes.
        py::module_::import("sys").attr("stdout").attr("flush")();
    }
    return status;
}
