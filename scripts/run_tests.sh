#!/usr/bin/env bash
# README command 2: installs what is missing, builds, and runs every test (CTest: Catch2 units,
# embedded-Python tests, MPI runs at 2 and 4 ranks, pytest in the three launch modes, demos,
# install). Each test has its own TIMEOUT.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${PPMPI_BUILD_DIR:-$here/build}
"$here/scripts/install_deps.sh"
"$here/scripts/build.sh"
source "$here/scripts/mpi_env.sh"
cd "$build"
# A failed test runs up to twice more: Open MPI 4.1.4's MPI_Comm_spawn can hang for good (the
# new worker stuck in PMIx_Init, the master in PMIx_Lookup), and a hung spawn blocks the test
# process until its TIMEOUT (README "Tests"). A test that fails three times fails.
ctest --output-on-failure --repeat until-pass:3 "$@"
