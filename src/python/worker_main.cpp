// ppmpi-worker: a worker rank. Spawned by a master (python3 driver.py alone), or started by
// mpirun next to the driver (mpirun -np 1 python3 driver.py : -np N ppmpi-worker).
// The main thread hosts CPython and runs the jobs; the comm thread owns MPI.
#include <pybind11/embed.h>

#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <string>

#include "ppmpi/mpi/mpi_env.hpp"
#include "ppmpi/python/python_job_runner.hpp"
#include "ppmpi/worker/worker.hpp"

namespace py = pybind11;
namespace fs = std::filesystem;

namespace {

// The interpreter whose environment (prefix, site-packages) the jobs run in. CPython finds its
// prefix from the program's name, which an embedded interpreter lacks: it would take whatever
// "python3" comes first on PATH, not the Python this worker was built for, nor a venv it was
// installed into, whose site-packages the driver imports ppmpi and its modules from.
std::string python_program() {
    std::error_code error;
    fs::path self = fs::read_symlink("/proc/self/exe", error);
    if (!error) {
        // pip's layout: <venv>/lib/pythonX.Y/site-packages/ppmpi/ppmpi-worker
        fs::path venv = self;
        for (int up = 0; up < 5; ++up) venv = venv.parent_path();
        if (fs::exists(venv / "pyvenv.cfg", error) && fs::exists(venv / "bin" / "python3", error))
            return (venv / "bin" / "python3").string();
    }
    if (fs::exists(PPMPI_PYTHON_EXECUTABLE, error)) return PPMPI_PYTHON_EXECUTABLE;
    return "";  // CPython's own search
}

// CPython initialised as pybind11 does by default (scoped_interpreter()), with the program.
PyConfig python_config() {
    PyConfig config;
    PyConfig_InitIsolatedConfig(&config);
    config.isolated = 0;
    config.use_environment = 1;
    config.install_signal_handlers = 1;
    std::string program = python_program();
    if (!program.empty()) {
        PyStatus status = PyConfig_SetBytesString(&config, &config.program_name, program.c_str());
        if (PyStatus_Exception(status)) Py_ExitStatusException(status);
    }
    return config;
}

}  // namespace

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
        PyConfig config = python_config();
        py::scoped_interpreter interpreter(&config);  // clears config
        ppmpi::PythonJobRunner runner;
        ppmpi::WorkerHost host(ppmpi::mpi_worker_environment(), ppmpi::mpi_worker_options());
        {
            py::gil_scoped_release released;  // the runner takes the GIL per call
            status = host.serve(runner);
        }
        // Flush what jobs printed outside their capture before the interpreter goes.
        py::module_::import("sys").attr("stdout").attr("flush")();
    }
    return status;
}
