// ppmpi-worker: a worker rank. Spawned by a master (python3 driver.py alone), or started by
// mpirun next to the driver (mpirun -np 1 python3 driver.py : -np N ppmpi-worker).
// The main thread hosts CPython and runs the jobs; the comm thread owns MPI.
#include <pybind11/embed.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <iostream>

#include "ppmpi/mpi/mpi_env.hpp"
#include "ppmpi/python/python_executor.hpp"
#include "ppmpi/worker/worker.hpp"

namespace py = pybind11;

int main(int argc, char** argv) {
    ppmpi::keep_freed_memory_for_reuse();
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
        ppmpi::WorkerHost host(ppmpi::mpi_worker_environment(), ppmpi::mpi_worker_options());
        {
            py::gil_scoped_release released;  // the executor takes the GIL per call
            status = host.serve(executor);
        }
        // Flush what jobs printed outside their capture before the interpreter goes.
        py::module_::import("sys").attr("stdout").attr("flush")();
    }
    return status;
}
