#!/usr/bin/env bash
# Runs a command on a simulated host (scripts/sim_hosts.sh) as if logged in there:
#   scripts/sim_run.sh HOST command [args...]
# HOST is a host's name (PREFIX<I>, default prefix ppsim) or address (10.231.7.<I+1>). The
# command runs inside that host's network namespace, with its own host name (a UTS
# namespace), its own TMPDIR and its own directory for vader's shared-memory segments
# (orted or the ranks segfault when simulated hosts share them). SIM_CLEAN_ENV=1 starts it
# with a login's environment (PATH, HOME) instead of ours, as ssh would.
set -euo pipefail
prefix=${PPMPI_SIM_PREFIX:-ppsim}
host=${1:?usage: sim_run.sh HOST command [args...]}
shift
if [[ "$host" =~ ^$prefix([0-9])$ ]]; then
    ns=$host
elif [[ "$host" =~ ^10\.231\.7\.([1-9])$ ]]; then
    ns="$prefix$((BASH_REMATCH[1] - 1))"
else
    echo "sim_run: $host is not a simulated host ($prefix<I> or 10.231.7.<I+1>)" >&2
    exit 255
fi
scratch="/tmp/$prefix-hosts/$ns"
if [ ! -d "$scratch" ]; then
    echo "sim_run: no simulated host $ns (scripts/sim_hosts.sh up N)" >&2
    exit 255
fi
envs=(TMPDIR="$scratch/tmp" OMPI_MCA_btl_vader_backing_directory="$scratch/shm")
clean=()
[ "${SIM_CLEAN_ENV:-0}" = 1 ] && clean=(-i PATH="/usr/local/bin:/usr/bin:/bin" HOME="${HOME:-/root}")
exec ip netns exec "$ns" unshare --uts -- env "${clean[@]}" "${envs[@]}" \
    bash -c 'hostname "$0" && exec "$@"' "$ns" "$@"
