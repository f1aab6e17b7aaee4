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
# Each test runs once: a test that fails, fails (docs/testing.md).
ctest --output-on-failure "$@"
