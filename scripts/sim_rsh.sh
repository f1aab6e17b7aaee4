#!/usr/bin/env bash
# mpirun's rsh agent for simulated hosts (scripts/sim_hosts.sh):
#   mpirun --mca plm_rsh_agent scripts/sim_rsh.sh --hostfile H ...   (or OMPI_MCA_plm_rsh_agent)
# Open MPI calls it as ssh: `sim_rsh.sh [ssh options] HOST 'command line'`. The command line
# (Open MPI's daemon) runs on that host through sim_run.sh, with a login's environment as
# over ssh: what the ranks need must come from mpirun (-x, or ppmpirun, which passes it).
set -euo pipefail
while [ $# -gt 0 ] && [ "${1#-}" != "$1" ]; do
    case "$1" in
    -l | -p | -i | -o) shift 2 ;; # ssh options that take a value
    *) shift ;;
    esac
done
host=${1:?sim_rsh: no host}
shift
SIM_CLEAN_ENV=1 exec "$(dirname "$0")/sim_run.sh" "$host" bash -c "$*"
