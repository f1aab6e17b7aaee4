// One CPython interpreter for the whole test process, as in ppmpi-worker: created on the main
// thread before any test runs, and released (GIL dropped) while the tests run, because the
// PythonJobRunner takes the GIL itself on every call. Tests that touch Python objects directly
// take the GIL with py::gil_scoped_acquire (see python_job_runner_test.cpp).
#define CATCH_CONFIG_RUNNER
#include <catch2/catch.hpp>
#include <cstdlib>
#include <pybind11/embed.h>

namespace py = pybind11;

int main(int argc, char** argv) {
    // Importing the ppmpi package inside a worker must not take the process over as an MPI
    // rank nor start a master: the same setting ppmpi-worker makes before its interpreter.
    ::setenv("PPMPI_IN_WORKER", "1", 1);
    int status = 0;
    {
        py::scoped_interpreter interpreter;
        py::gil_scoped_release released;
        status = Catch::Session().run(argc, argv);
    }
    return status;
}
