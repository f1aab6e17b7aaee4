// The Catch2 session of ppmpi_unit_tests (links ppmpi_logic only: no MPI, no Python).
#define CATCH_CONFIG_MAIN
#include <catch2/catch.hpp>
