#!/usr/bin/env bash
# The benchmark of issue 6, in one command (~6 min on 2 cores; --quick: ~40 s smoke run):
#   bench/run.sh [--quick] [--no-1e6] [--peers ppmpi,mp_pool] [--workloads noop,growth]
# Writes bench/results/results.{json,md,png}. Options: bench/run.py --help.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
# Sandbox MPI settings (root, oversubscription, loopback TCP); harmless elsewhere.
source "$root/scripts/mpi_env.sh"
# Measure the current source: build (incremental) unless told not to, e.g. while someone else
# is building into the same tree.
"$root/scripts/install_deps.sh"
if [[ -z "${BENCH_NO_BUILD:-}" ]]; then
    "$root/scripts/build.sh" >/dev/null
fi
# Debian's python3: the one with python3-mpi4py, -numpy, -matplotlib, -cloudpickle.
export PYTHONPATH="$root/build/python:$root/bench${PYTHONPATH:+:$PYTHONPATH}"
exec /usr/bin/python3 "$root/bench/run.py" "$@"
