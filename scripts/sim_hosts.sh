#!/usr/bin/env bash
# Simulated hosts for multi-host tests: network namespaces joined by veth pairs to a bridge
# that lives in a namespace of its own, so every address exists only inside namespaces made
# here (nothing is added to the machine's own interfaces).
#
#   scripts/sim_hosts.sh up N [PREFIX]    make hosts PREFIX0..PREFIX(N-1) (N = 2..9); idempotent
#   scripts/sim_hosts.sh down [PREFIX]    remove every namespace PREFIX* made here; idempotent
#   scripts/sim_hosts.sh addr I           the address of host I (10.231.7.(I+1))
#
# Host I has address 10.231.7.(I+1)/24 on eth0 and its own lo. Run a command on host I with
# `ip netns exec PREFIXI cmd` (scripts/sim_rsh.sh does that for mpirun's daemons, with the
# per-host TMPDIR and shared-memory directory Open MPI needs). Needs root (ip netns).
set -euo pipefail
prefix_default=ppsim
subnet=10.231.7

addr() { echo "$subnet.$(($1 + 1))"; }

down() {
    local prefix=${1:-$prefix_default} ns
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}'); do
        case "$ns" in
        "$prefix"[0-9] | "$prefix"-sw)
            # Processes left inside (a failed test's daemons) would keep the namespace alive.
            local pids
            pids=$(ip netns pids "$ns" 2>/dev/null || true)
            [ -z "$pids" ] || kill -9 $pids 2>/dev/null || true
            ip netns del "$ns" 2>/dev/null || true
            ;;
        esac
    done
    rm -rf "/tmp/$prefix-hosts" /etc/netns/"$prefix"[0-9]
    rmdir /etc/netns 2>/dev/null || true  # only if nothing else is in it
}

up() {
    local n=$1 prefix=${2:-$prefix_default} i ns
    if ! [[ "$n" =~ ^[2-9]$ ]]; then
        echo "sim_hosts: N must be 2..9, got '$n'" >&2
        exit 2
    fi
    down "$prefix"
    trap 'down "$prefix"' ERR
    local sw="$prefix-sw"
    ip netns add "$sw"
    ip -n "$sw" link set lo up
    ip -n "$sw" link add br0 type bridge
    ip -n "$sw" link set br0 up
    for ((i = 0; i < n; i++)); do
        ns="$prefix$i"
        ip netns add "$ns"
        ip -n "$ns" link set lo up
        # Created inside the host's namespace, the peer moved to the switch: never in ours.
        ip -n "$ns" link add eth0 type veth peer name "p$i" netns "$sw"
        ip -n "$ns" addr add "$(addr "$i")/24" dev eth0
        ip -n "$ns" link set eth0 up
        ip -n "$sw" link set "p$i" master br0
        ip -n "$sw" link set "p$i" up
        # Per-host scratch: Open MPI's session directory and vader's segments must not be
        # shared between simulated hosts (orted or the ranks crash otherwise).
        mkdir -p "/tmp/$prefix-hosts/$ns/tmp" "/tmp/$prefix-hosts/$ns/shm"
    done
    # Host names: `ip netns exec NS` bind-mounts /etc/netns/NS/hosts over /etc/hosts, so each
    # simulated host resolves the others' names (and its own) without touching /etc/hosts.
    for ((i = 0; i < n; i++)); do
        mkdir -p "/etc/netns/$prefix$i"
        {
            echo "127.0.0.1 localhost"
            for ((j = 0; j < n; j++)); do echo "$(addr "$j") $prefix$j"; done
        } >"/etc/netns/$prefix$i/hosts"
    done
    trap - ERR
    # Host 0 reaches every other before anyone relies on it (bounded: 5 tries of 1 s). No ping
    # here: a TCP connect to a closed port that is refused proves the host answered.
    for ((i = 1; i < n; i++)); do
        local tries=0 out
        while :; do
            out=$(ip netns exec "${prefix}0" timeout 1 bash -c "exec 3<>/dev/tcp/$(addr "$i")/9" 2>&1 || true)
            [[ "$out" == *refused* ]] && break
            tries=$((tries + 1))
            if [ "$tries" -ge 5 ]; then
                echo "sim_hosts: host $i does not answer ($out)" >&2
                down "$prefix"
                exit 1
            fi
            sleep 0.2
        done
    done
}

case "${1:-}" in
up) up "${2:?N}" "${3:-}" ;;
down) down "${2:-}" ;;
addr) addr "${2:?I}" ;;
*)
    echo "usage: $0 up N [PREFIX] | down [PREFIX] | addr I" >&2
    exit 2
    ;;
esac
