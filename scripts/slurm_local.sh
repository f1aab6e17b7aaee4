#!/usr/bin/env bash
# A private one-node Slurm cluster for trying the examples/slurm/*.sbatch scripts (and for
# tests/slurm/slurm_check.sh), started by hand: no systemd, no system config.
#
#   scripts/slurm_local.sh install            # apt-get slurm-wlm and munge if missing (root)
#   scripts/slurm_local.sh start DIR [CPUS]   # munged, slurmctld, slurmd; all state in DIR
#   export SLURM_CONF=DIR/slurm.conf          # then sbatch/srun/sinfo talk to that cluster
#   scripts/slurm_local.sh stop DIR           # cancels its jobs, stops what start started
#
# Everything lives in DIR (a new or empty directory): slurm.conf, the munge key, socket, pid,
# seed and log files, slurmctld's state, slurmd's spool, the daemons' logs. The daemons run as
# root (SlurmUser=root), listen on two free TCP ports picked at start, call the cluster
# "ppmpi-local" and use a munged of their own (AuthInfo=socket=DIR/run/munge.socket), so a
# system munged or Slurm on the same machine is neither used nor touched. The node advertises
# CPUS CPUs (default 4; SlurmdParameters=config_overrides lets it claim more than the machine
# has), proctrack/linuxproc, task/none (no cgroups), select/cons_tres, and
# EnforcePartLimits=ALL so that a job asking for more than the node has is rejected at
# submission instead of pending forever.
#
# `stop` ends only processes this script started: the pids it recorded in DIR/run/*.pid, each
# checked to still be that daemon (its command line names DIR), then any job process left
# behind, recognised by SLURM_CONF=DIR/slurm.conf in its environment (every process of this
# cluster's jobs inherits it from slurmd). Each start-up wait is bounded.
#
# Sourced (`source scripts/slurm_local.sh`), it only defines slurm_local_install,
# slurm_local_start DIR [CPUS] and slurm_local_stop DIR (what tests/slurm/slurm_check.sh
# does): the daemons are then children of the sourcing shell, which reaps them when it stops
# them (run as a command, the daemons outlive the script and are reparented to init).

slurm_local_die() { echo "slurm_local: $*" >&2; exit 1; }

slurm_local_install() {
  local missing=()
  command -v munged >/dev/null || missing+=(munge)
  { command -v slurmctld && command -v slurmd && command -v sbatch; } >/dev/null \
    || missing+=(slurm-wlm)
  [ ${#missing[@]} -eq 0 ] && return 0
  [ "$(id -u)" = 0 ] || slurm_local_die "need root to install ${missing[*]}"
  echo "slurm_local: installing ${missing[*]} (apt-get)"
  # The packages' postinst scripts create /etc/munge/munge.key and enable systemd units;
  # nothing here uses either (policy-rc.d or no systemd stops them from starting).
  DEBIAN_FRONTEND=noninteractive timeout 300 apt-get update -q >/dev/null
  DEBIAN_FRONTEND=noninteractive timeout 600 apt-get install -y -q --no-install-recommends \
    "${missing[@]}" >/dev/null
}

slurm_local_free_ports() {  # two free TCP ports on loopback
  /usr/bin/python3 - <<'EOF'
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(*(s.getsockname()[1] for s in socks))
EOF
}

# slurm_local_is_ours PID DIR: PID is alive and its command line names DIR (not a recycled pid).
slurm_local_is_ours() {
  local cmdline
  [ -n "$1" ] && cmdline=$(tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null) && [[ $cmdline == *"$2"* ]]
}

slurm_local_wait_gone() {  # slurm_local_wait_gone SECONDS PID...: 0 once every PID has exited
  local deadline=$((SECONDS + $1)); shift
  while [ $SECONDS -lt $deadline ]; do
    local alive=0 p
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ $alive = 0 ] && return 0
    sleep 0.2
  done
  return 1
}

slurm_local_start() {
  local dir=$1 cpus=${2:-4}
  mkdir -p "$dir" || slurm_local_die "cannot make $dir"
  dir=$(cd "$dir" && pwd)
  [ -e "$dir/slurm.conf" ] && slurm_local_die "$dir already holds a cluster (stop it, or use a new directory)"
  # munged refuses a socket whose directories are not searchable by all or are writable by
  # others; the key directory stays private.
  chmod 0755 "$dir"
  mkdir -p "$dir/run" "$dir/log" "$dir/state" "$dir/spool" && chmod 0755 "$dir/run" "$dir/log" \
    && mkdir -m 0700 -p "$dir/munge" || slurm_local_die "cannot make the directories in $dir"
  local sock=$dir/run/munge.socket
  [ ${#sock} -lt 100 ] || slurm_local_die "socket path too long for a unix socket: $sock"

  mungekey --create --keyfile="$dir/munge/munge.key" --bits=1024 \
    || slurm_local_die "mungekey could not create $dir/munge/munge.key"
  # -F: foreground, so $! is munged's own pid.
  munged -F --key-file="$dir/munge/munge.key" --socket="$sock" --pid-file="$dir/run/munged.pid" \
    --log-file="$dir/log/munged.log" --seed-file="$dir/munge/munged.seed" \
    >"$dir/log/munged.out" 2>&1 </dev/null &
  echo $! >"$dir/run/munged.pid.ours"

  for _ in $(seq 50); do [ -S "$sock" ] && break; sleep 0.1; done
  munge -S "$sock" -n </dev/null | unmunge -S "$sock" >/dev/null 2>&1 \
    || { cat "$dir/log/munged.out" >&2; slurm_local_die "munged did not start (see $dir/log)"; }

  local node ports
  node=$(hostname -s)
  read -r -a ports < <(slurm_local_free_ports)
  [ ${#ports[@]} = 2 ] || slurm_local_die "could not find two free ports"
  cat >"$dir/slurm.conf" <<EOF || slurm_local_die "cannot write $dir/slurm.conf"
# Written by scripts/slurm_local.sh: a private one-node cluster, all state under $dir
ClusterName=ppmpi-local
SlurmctldHost=$node(127.0.0.1)
SlurmctldPort=${ports[0]}
SlurmdPort=${ports[1]}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket=$sock
StateSaveLocation=$dir/state
SlurmdSpoolDir=$dir/spool
SlurmctldPidFile=$dir/run/slurmctld.pid
SlurmdPidFile=$dir/run/slurmd.pid
SlurmctldLogFile=$dir/log/slurmctld.log
SlurmdLogFile=$dir/log/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
MailProg=/bin/true
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_CPU
SchedulerType=sched/backfill
EnforcePartLimits=ALL
SlurmdParameters=config_overrides
ReturnToService=2
MpiDefault=none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
SwitchType=switch/none
InactiveLimit=0
KillWait=5
NodeName=$node NodeAddr=127.0.0.1 CPUs=$cpus State=UNKNOWN
PartitionName=local Nodes=$node Default=YES MaxTime=30 State=UP
EOF
  export SLURM_CONF=$dir/slurm.conf
  # -D: foreground, so $! is the daemon's pid; every job process inherits SLURM_CONF.
  slurmctld -D -f "$SLURM_CONF" >"$dir/log/slurmctld.out" 2>&1 </dev/null &
  echo $! >"$dir/run/slurmctld.pid.ours"
  slurmd -D -f "$SLURM_CONF" >"$dir/log/slurmd.out" 2>&1 </dev/null &
  echo $! >"$dir/run/slurmd.pid.ours"

  # Bounded wait (30 s) for the controller to answer and the node to be idle.
  local deadline=$((SECONDS + 30)) state=
  while [ $SECONDS -lt $deadline ]; do
    state=$(timeout 5 sinfo -h -n "$node" -o '%t' 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 0.3
  done
  if [ "$state" != idle ]; then
    tail -n 20 "$dir"/log/*.out >&2 || true
    slurm_local_die "node $node not idle after 30 s (state '${state:-no answer}'; logs in $dir/log)"
  fi
  echo "slurm_local: cluster up in $dir (node $node, $cpus CPUs, ports ${ports[*]})"
  echo "export SLURM_CONF=$SLURM_CONF"
}

slurm_local_stop() {
  local dir=$1
  [ -d "$dir" ] || return 0
  dir=$(cd "$dir" && pwd)
  export SLURM_CONF=$dir/slurm.conf
  local ctld d munge
  ctld=$(cat "$dir/run/slurmctld.pid.ours" 2>/dev/null || true)
  d=$(cat "$dir/run/slurmd.pid.ours" 2>/dev/null || true)
  munge=$(cat "$dir/run/munged.pid.ours" 2>/dev/null || true)
  # Jobs first, while the daemons can still end them.
  if slurm_local_is_ours "$ctld" "$dir"; then
    timeout 10 scancel --full --user=root >/dev/null 2>&1 || true
    local deadline=$((SECONDS + 15))
    while [ $SECONDS -lt $deadline ] && [ -n "$(timeout 5 squeue -h -o %i 2>/dev/null)" ]; do
      sleep 0.5
    done
  fi
  local p pids=()
  for p in "$d" "$ctld"; do
    if slurm_local_is_ours "$p" "$dir"; then kill -TERM "$p" 2>/dev/null && pids+=("$p"); fi
  done
  if [ ${#pids[@]} -gt 0 ] && ! slurm_local_wait_gone 15 "${pids[@]}"; then
    for p in "${pids[@]}"; do slurm_local_is_ours "$p" "$dir" && kill -KILL "$p" 2>/dev/null || true; done
  fi
  # Leftovers of this cluster's jobs, all with our SLURM_CONF: slurmstepd (it inherits
  # slurmd's environment), the job's processes (they also carry SLURM_JOB_ID), and clients
  # of this cluster still waiting (sbatch --wait, srun).
  local env_mark="SLURM_CONF=$dir/slurm.conf" e envs
  pids=()
  for e in /proc/[0-9]*/environ; do
    p=${e#/proc/}; p=${p%/environ}
    [ "$p" = $$ ] && continue
    envs=$( { tr '\0' '\n' <"$e"; } 2>/dev/null) || continue
    grep -qxF "$env_mark" <<<"$envs" || continue
    if grep -q '^SLURM_JOB_ID=' <<<"$envs"; then
      pids+=("$p")
    else
      case "$(cat "/proc/$p/comm" 2>/dev/null)" in
        slurmstepd|sbatch|srun|salloc) pids+=("$p") ;;  # or a client still waiting on us
      esac
    fi
  done
  if [ ${#pids[@]} -gt 0 ]; then
    echo "slurm_local: ending ${#pids[@]} leftover job process(es): ${pids[*]}" >&2
    kill -TERM "${pids[@]}" 2>/dev/null || true
    slurm_local_wait_gone 5 "${pids[@]}" || kill -KILL "${pids[@]}" 2>/dev/null || true
  fi
  if slurm_local_is_ours "$munge" "$dir"; then
    kill -TERM "$munge" 2>/dev/null || true
    slurm_local_wait_gone 10 "$munge" || { slurm_local_is_ours "$munge" "$dir" && kill -KILL "$munge"; } || true
  fi
  # Reap them if they are this shell's children (when this file was sourced).
  for p in "$d" "$ctld" "$munge"; do [ -n "$p" ] && { wait "$p" 2>/dev/null || true; }; done
  rm -f "$dir"/run/*.pid.ours
  return 0
}

# Run as a command (not sourced):
if [ "${BASH_SOURCE[0]}" = "$0" ]; then
  set -euo pipefail
  case "${1:-}" in
    install) slurm_local_install ;;
    start) [ $# -ge 2 ] || slurm_local_die "usage: $0 start DIR [CPUS]"
           slurm_local_install; slurm_local_start "$2" "${3:-4}" ;;
    stop) [ $# -ge 2 ] || slurm_local_die "usage: $0 stop DIR"; slurm_local_stop "$2" ;;
    *) echo "usage: $0 install | start DIR [CPUS] | stop DIR" >&2; exit 2 ;;
  esac
fi
