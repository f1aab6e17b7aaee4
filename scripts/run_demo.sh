#!/usr/bin/env bash
# README command 1: installs what is missing, builds, and runs the demo driver
# (examples/sum_primes.py) as `python3 driver.py`: the Server spawns one worker per CPU.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
"$here/scripts/install_deps.sh"
"$here/scripts/build.sh" >/dev/null
source "$here/scripts/mpi_env.sh"
export PYTHONPATH="${PPMPI_BUILD_DIR:-$here/build}/python${PYTHONPATH:+:$PYTHONPATH}"
exec /usr/bin/python3 "$here/examples/sum_primes.py" "$@"
