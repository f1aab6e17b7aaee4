#!/usr/bin/env bash
# Runs fault_sequence.py on one server: fault_sequence.sh WORKER alone|mpirun-np4
# WORKER is the ppmpi-worker to wrap (the driver chmods the wrapper, never the real one).
# Passes on the driver's last line. Alone, the driver must also exit 0; under mpirun
# --enable-recovery the exit status reflects the workers the cases killed, so it is ignored.
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
status=0
"${cmd[@]}" 2>&1 | tee "$scratch/out" || status=$?
grep -q "^OK: all fault cases passed" "$scratch/out"
echo "driver exit status: $status"
if [[ $mode == alone && $status -ne 0 ]]; then
    echo "the driver printed OK but exited with status $status" >&2
    exit 1
fi
