#!/usr/bin/env bash
# Configures and builds into build/ (or $PPMPI_BUILD_DIR) with Debian's python3.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
build=${PPMPI_BUILD_DIR:-$here/build}
cmake -S "$here" -B "$build" -DPython3_EXECUTABLE=/usr/bin/python3 "$@"
cmake --build "$build" -j "$(nproc)"
