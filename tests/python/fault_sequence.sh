#!/usr/bin/env bash
# Runs fault_sequence.py on one server: fault_sequence.sh WORKER alone|mpirun-np4
# WORKER is the ppmpi-worker to wrap (the driver chmods the wrapper, never the real one).
# Passes on the driver's last line (mpirun --enable-recovery's exit status says nothing).
set -euo pipefail
worker=$1 mode=$2
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d /tmp/ppmpi-faults.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
printf '#!/bin/sh\nexec "%s" "$@"\n' "$worker" > "$scratch/worker.sh"
chmod 755 "$scratch/worker.sh"
export PPMPI_WORKER=$scratch/worker.sh
python=${PYTHON:-/usr/bin/python3}
case $mode in
    alone) cmd=("$python" "$here/fault_sequence.py") ;;
    mpirun-np4) cmd=(mpirun --oversubscribe --enable-recovery -x PPMPI_WORKER -np 4 "$python"
                     "$here/fault_sequence.py") ;;
    *) echo "unknown mode $mode" >&2; exit 2 ;;
esac
"${cmd[@]}" 2>&1 | tee "$scratch/out"
grep -q "^OK: all fault cases passed" "$scratch/out"
