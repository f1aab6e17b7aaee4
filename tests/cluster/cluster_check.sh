#!/usr/bin/env bash
# Many hosts over TCP, on simulated hosts: six network namespaces joined by veth pairs to a
# bridge (scripts/sim_hosts.sh; addresses 10.231.7.x exist only inside them), Open MPI's
# daemons started in each through an rsh agent (scripts/sim_rsh.sh), the driver on host 0.
#
#   tests/cluster/cluster_check.sh BUILD_DIR SOURCE_DIR
#
# Cases (tests/cluster/cluster_driver.py checks its own results): a driver across 3 hosts
# under mpirun --hostfile and under ppmpirun --hostfile; a far worker SIGKILLed and one
# SIGSTOPped mid-run; a whole far host lost (its daemon and ranks SIGKILLed), on 3 hosts and
# on 6 hosts of 8 ranks each (48 ranks); 64 MiB arrays
# to a far worker, next to the MPI ping-pong over the same veth. Every run is bounded, must
# end by itself (mpirun included), and must leave no process in the namespaces, which are
# removed at the end, also on failure. Ends with "cluster: N passed, M failed".
set -uo pipefail
build=$(cd "${1:?build dir}" && pwd)
src=$(cd "${2:?source dir}" && pwd)
export PPMPI_SIM_PREFIX=ppsim
hosts="$src/scripts/sim_hosts.sh"
nhosts=6
namespaces=$(seq -f "$PPMPI_SIM_PREFIX%g" 0 $((nhosts - 1)))
run_on="$src/scripts/sim_run.sh"
driver="$src/tests/cluster/cluster_driver.py"
python=${PYTHON:-/usr/bin/python3}
scratch=$(mktemp -d /tmp/ppmpi-cluster.XXXXXX)
passed=0
failed=0

cleanup() {
    "$hosts" down "$PPMPI_SIM_PREFIX" >/dev/null 2>&1
    rm -rf "$scratch"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

source "$src/scripts/mpi_env.sh"
# The simulated network instead of loopback; no binding (the hosts share 2 cores).
export OMPI_MCA_plm_rsh_agent="$src/scripts/sim_rsh.sh"
export OMPI_MCA_btl_tcp_if_include=10.231.7.0/24 OMPI_MCA_oob_tcp_if_include=10.231.7.0/24
export OMPI_MCA_hwloc_base_binding_policy=none
export PYTHONPATH="$build/python" PYTHONDONTWRITEBYTECODE=1

"$hosts" up "$nhosts" "$PPMPI_SIM_PREFIX" || {
    echo "cluster: could not make the simulated hosts"
    echo "cluster: 0 passed, 1 failed"
    exit 1
}
cp "$src/hostfiles/simulated" "$scratch/three"
printf '%s\n' "ppsim0 slots=1" "ppsim1 slots=1" >"$scratch/two"
for ns in $namespaces; do echo "$ns slots=8"; done >"$scratch/six"

# Nothing may be left running in a simulated host 10 s after a run (what is, is ours: killed).
leftovers() {
    local ns pids all="" tries
    for tries in $(seq 100); do
        [ -z "$(for ns in $namespaces; do ip netns pids "$ns"; done 2>/dev/null)" ] && return
        sleep 0.1
    done
    for ns in $namespaces; do
        pids=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
        [ -z "${pids// /}" ] || all+=" $ns:[$pids]"
    done
    if [ -n "$all" ]; then
        for ns in $namespaces; do
            pids=$(ip netns pids "$ns" 2>/dev/null)
            [ -z "$pids" ] || kill -9 $pids 2>/dev/null
        done
    fi
    echo "$all"
}

# check NAME LIMIT_S EXPECT command...: runs the command on host 0 (bounded), passes if its
# output has EXPECT, no failure line, it ended by itself and left nothing behind.
check() {
    local name=$1 limit=$2 expect=$3 log="$scratch/$1.log" rc start took left
    shift 3
    start=$(date +%s%N)
    timeout -k 5 "$limit" "$run_on" ppsim0 "$@" >"$log" 2>&1
    rc=$?
    took=$((($(date +%s%N) - start) / 1000000))
    left=$(leftovers)
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
        echo "FAIL $name: did not end within $limit s"
    elif ! grep -q "$expect" "$log" || grep -q "CLUSTER-FAILED\|Traceback" "$log"; then
        echo "FAIL $name (exit $rc): no '$expect'"
    elif [ -n "$left" ]; then
        echo "FAIL $name: left running:$left"
    else
        echo "ok   $name ($((took / 1000)).$(printf %03d $((took % 1000))) s)"
        grep -E "lost|sent signal|survivors|GiB/s|destroy took" "$log" | sed 's/^/       /'
        passed=$((passed + 1))
        return 0
    fi
    sed 's/^/    | /' "$log" | grep -v "PMIX ERROR" | tail -40
    failed=$((failed + 1))
    return 1
}

mpirun_on() {  # mpirun as a user would type it, on the simulated cluster
    echo mpirun --enable-recovery -x PYTHONPATH --hostfile "$1"
}

check mpirun-3-hosts 90 "CLUSTER-OK basic" \
    $(mpirun_on "$scratch/three") -np 5 "$python" "$driver" basic ppsim1 ppsim2
check ppmpirun-3-hosts 90 "CLUSTER-OK basic" \
    "$build/bin/ppmpirun" --hostfile "$scratch/three" -np 5 "$driver" basic ppsim1 ppsim2
check far-worker-killed 90 "CLUSTER-OK kill" \
    $(mpirun_on "$scratch/three") -np 5 "$python" "$driver" kill ppsim1 ppsim2
check far-worker-stopped 90 "CLUSTER-OK stop" \
    "$build/bin/ppmpirun" --hostfile "$scratch/three" -np 5 "$driver" stop ppsim1 ppsim2
check far-host-lost 90 "CLUSTER-OK hostloss" \
    $(mpirun_on "$scratch/three") -np 5 "$python" "$driver" hostloss ppsim1 ppsim2
# 48 ranks on 6 hosts (the master's host holds 7 workers): the last host's 8 go at once.
check far-host-lost-6-hosts 240 "CLUSTER-OK hostloss" \
    $(mpirun_on "$scratch/six") -np 48 "$python" "$driver" hostloss \
    $(echo $namespaces | cut -d' ' -f2-)

# Large arguments across hosts, next to the plain MPI ping-pong over the same veth.
if mpicc -O2 -o "$scratch/pingpong" "$src/bench/pingpong.c" >"$scratch/mpicc.log" 2>&1; then
    check pingpong-2-hosts 90 '"bytes": 67108864' \
        mpirun --hostfile "$scratch/two" -np 2 "$scratch/pingpong" &&
        grep -o '{"mode".*}' "$scratch/pingpong-2-hosts.log" | "$python" -c '
import json, sys
for row in json.load(sys.stdin)["sizes"]:
    size, one_way, rate = row["bytes"], row["latency_us"], row["bandwidth_gib_s"]
    print(f"       MPI ping-pong, {size} B: one way {one_way} us, {rate} GiB/s")'
else
    echo "FAIL pingpong-2-hosts: mpicc failed"
    sed 's/^/    | /' "$scratch/mpicc.log"
    failed=$((failed + 1))
fi
check array-to-far-host 120 "CLUSTER-OK bandwidth" \
    $(mpirun_on "$scratch/two") -np 2 "$python" "$driver" bandwidth ppsim1

echo "cluster: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
