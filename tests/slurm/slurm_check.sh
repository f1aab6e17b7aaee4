#!/usr/bin/env bash
# The Slurm test (CTest label `slurm`): a private one-node Slurm cluster, started by hand, runs
# the examples/slurm/*.sbatch scripts with `sbatch --wait` and checks what they print.
#
#   tests/slurm/slurm_check.sh BUILD_DIR SOURCE_DIR [PYTHON]     # by hand, as root
#   cd build && ctest -L slurm --output-on-failure                # the same, from CTest
#
# 1. Installs Debian's slurm-wlm and munge if they are missing (apt-get; needs root: without
#    root and without them the test is skipped, exit 77).
# 2. Starts munged, slurmctld and slurmd for one node advertising 4 CPUs (on any machine)
#    with scripts/slurm_local.sh, everything (config, munge key and socket, state, spool,
#    logs, pid files) in a new scratch directory BUILD_DIR/tests/slurm/run.XXXXXX, on two
#    free ports, as cluster "ppmpi-local"; slurm tools find it through SLURM_CONF.
# 3. Checks: the node's CPU count; an over-sized job is rejected at submission (not left
#    pending); which rank variables srun --mpi=pmix gives its tasks; then each example
#    (static, mpmd, grow, srun; PPMPI_SLURM_EXAMPLES="static grow" picks some) is submitted
#    with sbatch --wait under `timeout`, and must exit 0 and print the driver's check line
#    "OK: all results checked (N jobs on 3 workers)" with no FAILED or traceback. With srun
#    also: `srun --mpi=pmix -n 2 driver.py --grow-refused 3` (set_ncpus above the step must
#    raise, and the server go on).
# 4. On exit, also on failure or Ctrl-C (trap), cancels its jobs and stops exactly the
#    daemons it started, by pid. The scratch directory is removed when every check passed,
#    kept (with the daemons' and jobs' logs) otherwise.
#
# The sandbox settings (scripts/mpi_env.sh: root, TCP on lo...) are exported here, never
# written in the examples: sbatch passes the submitting environment on to the job.
# Prints "slurm: N passed, M failed" last; exits 1 if any check failed.
set -uo pipefail

if [ $# -lt 2 ]; then
  echo "usage: $0 BUILD_DIR SOURCE_DIR [PYTHON]" >&2
  exit 2
fi
build=$(cd "$1" && pwd)
src=$(cd "$2" && pwd)
python=${3:-/usr/bin/python3}
examples=${PPMPI_SLURM_EXAMPLES:-static mpmd grow srun}
job_timeout=${PPMPI_SLURM_JOB_TIMEOUT:-120}   # seconds for each sbatch --wait

# shellcheck source=scripts/slurm_local.sh
source "$src/scripts/slurm_local.sh"
# shellcheck source=scripts/mpi_env.sh
source "$src/scripts/mpi_env.sh"

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "slurm: SKIPPED: slurm-wlm/munge not installed and not root to install them"
    exit 77
  fi
fi
start_install=$SECONDS
if ! ( set -e; slurm_local_install ); then
  echo "slurm: FAILED: could not install slurm-wlm/munge"
  echo "slurm: 0 passed, 1 failed"
  exit 1
fi
[ $((SECONDS - start_install)) -gt 1 ] && echo "slurm: installed in $((SECONDS - start_install)) s"

# A test started inside someone's Slurm job must not talk to that job's cluster.
for v in $(compgen -e | grep -E '^(SLURM|SBATCH|SALLOC|SRUN)_' || true); do unset "$v"; done
export PYTHONPATH=$build/python${PYTHONPATH:+:$PYTHONPATH}
export PATH=$build/bin:$PATH
export PYTHON=$python          # the examples' interpreter (python3 on PATH by default)
export PYTHONDONTWRITEBYTECODE=1

mkdir -p "$build/tests/slurm"
# A run killed outright (SIGKILL, no trap: CTest's TIMEOUT) may leave its daemons, its job
# processes (slurmstepd, tasks) and munged behind: stop those of earlier runs whose test
# script (run/owner.pid) is gone. A run still going is left alone; its logs are kept.
for old in "$build"/tests/slurm/run.* "${TMPDIR:-/tmp}"/ppmpi-slurm.*; do
  [ -f "$old/run/owner.pid" ] && [ -f "$old/run/slurmctld.pid.ours" ] || continue
  slurm_local_is_ours "$(cat "$old/run/owner.pid")" slurm_check.sh && continue
  echo "slurm: stopping what a killed earlier run left behind in $old"
  slurm_local_stop "$old" || true
done
scratch=$(mktemp -d "$build/tests/slurm/run.XXXXXX")
# A unix socket path must stay short: fall back to TMPDIR for a deep build directory.
if [ ${#scratch} -gt 70 ]; then
  rmdir "$scratch"
  scratch=$(mktemp -d "${TMPDIR:-/tmp}/ppmpi-slurm.XXXXXX")
fi
mkdir -p "$scratch/run" && echo $$ >"$scratch/run/owner.pid"
passed=0
failed=0
bg=  # the pid of the sbatch/srun being waited for, if any
t0=$SECONDS
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  # An sbatch --wait or srun still running (interrupted): timeout passes the TERM on.
  [ -n "$bg" ] && kill -TERM "$bg" 2>/dev/null && wait "$bg" 2>/dev/null
  slurm_local_stop "$scratch" || true
  [ "$rc" != 0 ] && [ "$failed" = 0 ] && failed=1  # died before counting (e.g. no cluster)
  if [ "$failed" = 0 ]; then
    rm -rf "$scratch"
  else
    echo "slurm: logs kept in $scratch (log/, jobs/)"
    rc=1
  fi
  echo "slurm: $passed passed, $failed failed ($((SECONDS - t0)) s)"
  exit "$rc"
}
trap cleanup EXIT
trap 'echo "slurm: interrupted"; failed=$((failed + 1)); exit 1' INT TERM

pass() { passed=$((passed + 1)); echo "PASS $*"; }
fail() { failed=$((failed + 1)); echo "FAIL $*"; }

# In this shell (not a subshell), so that the daemons are its children and are reaped when
# stopped; it exits (through cleanup) if the cluster does not come up, and exports SLURM_CONF.
slurm_local_start "$scratch" 4
echo "slurm: cluster up in $((SECONDS - t0)) s, SLURM_CONF=$SLURM_CONF"
mkdir -p "$scratch/jobs"

# --- the cluster as configured -------------------------------------------------------------
cpus=$(timeout 10 sinfo -h -o '%c' 2>&1)
if [ "$cpus" = 4 ]; then pass "cluster: node advertises 4 CPUs (config_overrides)"
else fail "cluster: sinfo CPUs = '$cpus', expected 4"; fi

# EnforcePartLimits=ALL: more CPUs than the partition has must be refused at once.
if out=$(timeout 30 sbatch --ntasks=9 --time=1 --output=/dev/null --wrap=true 2>&1); then
  fail "oversize: sbatch --ntasks=9 was accepted ($out); it would pend forever"
  timeout 10 scancel "$(grep -o '[0-9]\+' <<<"$out" | tail -n 1)" 2>/dev/null
else
  pass "oversize: sbatch --ntasks=9 refused: $out"
fi

# What a task sees under srun --mpi=pmix (ppmpi's rank detection must find its rank here).
envfile=$scratch/jobs/srun-env.txt
if timeout 60 srun --mpi=pmix -n 2 --output="$envfile.%t" bash -c \
    'env | grep -E "^(PMIX|SLURM|OMPI|PMI)_" | sort' 2>"$envfile.err" \
   && grep -q '^SLURM_PROCID=1$' "$envfile.1" && grep -q '^PMIX_RANK=1$' "$envfile.1"; then
  pass "srun-env: srun --mpi=pmix tasks see $(grep -oE '^(SLURM_PROCID|SLURM_NTASKS|SLURM_STEP_NUM_TASKS|PMIX_RANK|PMIX_NAMESPACE|PMI_RANK|PMI_SIZE|OMPI_COMM_WORLD_RANK|OMPI_COMM_WORLD_SIZE)=' "$envfile.1" | tr -d = | tr '\n' ' ')"
else
  fail "srun-env: srun --mpi=pmix -n 2 env failed: $(cat "$envfile".* 2>/dev/null | head -n 5)"
fi

# --- the examples --------------------------------------------------------------------------
run_example() {  # run_example NAME: sbatch --wait examples/slurm/NAME.sbatch, check its output
  runs=$((runs + 1))
  local name=$1 script=$src/examples/slurm/$1.sbatch out=$scratch/jobs/$runs-$1.out
  local start=$SECONDS rc jobid why=
  # Submitted from the examples' directory (the scripts find driver.py in SLURM_SUBMIT_DIR);
  # the job runs in the scratch directory. --parsable prints the job id before waiting.
  # In the background and waited for: a TERM/INT trap then runs at once, not after the job.
  (cd "$src/examples/slurm" && exec timeout "$job_timeout" sbatch --wait --parsable \
     --chdir="$scratch/jobs" --output="$out" "$script") >"$out.sbatch" 2>&1 &
  bg=$!
  wait "$bg"
  rc=$?
  bg=
  jobid=$(grep -m1 -oE '^[0-9]+' "$out.sbatch" || true)
  if [ $rc = 124 ]; then
    why="sbatch --wait timed out after $job_timeout s"
    [ -n "$jobid" ] && timeout 10 scancel "$jobid"
  elif [ $rc != 0 ]; then
    why="sbatch --wait exited $rc (the job failed)"
    grep -qv '^[0-9]*$' "$out.sbatch" && why+=": $(grep -v '^[0-9]*$' "$out.sbatch" | head -n 3)"
  elif [ ! -s "$out" ]; then
    why="no output file $out"
  elif grep -qE 'FAILED|Traceback \(most recent call last\)' "$out"; then
    why="the driver reported a failure"
  elif ! grep -qE '^OK: all results checked \([0-9]+ jobs on 3 workers\)$' "$out"; then
    why="no line 'OK: all results checked (N jobs on 3 workers)'"
  elif [ "$name" = grow ] && ! grep -q '^set_ncpus(3): now 3 workers' "$out"; then
    why="no line 'set_ncpus(3): now 3 workers'"
  fi
  if [ -z "$why" ]; then
    pass "$name: job $jobid, $(grep '^OK: ' "$out") in $((SECONDS - start)) s"
  else
    fail "$name: job ${jobid:-?}: $why ($((SECONDS - start)) s); last lines of $out:"
    tail -n 25 "$out" 2>/dev/null | sed 's/^/    /'
  fi
}

# Under srun the world cannot grow (no MPI_Comm_spawn without mpirun): set_ncpus above the
# step's tasks must raise at once, and the server must go on with the workers it has.
check_srun_grow_refused() {
  local out=$scratch/jobs/srun-grow-refused.out start=$SECONDS rc why=
  (cd "$scratch/jobs" && exec timeout 90 srun --mpi=pmix -n 2 "$python" \
     "$src/examples/slurm/driver.py" --workers 1 --grow-refused 3) >"$out" 2>&1 &
  bg=$!
  wait "$bg"
  rc=$?
  bg=
  if [ $rc = 124 ]; then why="srun timed out after 90 s"
  elif [ $rc != 0 ]; then why="srun exited $rc"
  elif ! grep -q '^set_ncpus(3) refused' "$out"; then why="no line 'set_ncpus(3) refused ...'"
  elif ! grep -qE '^OK: all results checked \([0-9]+ jobs on 1 workers\)$' "$out"; then
    why="no line 'OK: all results checked (N jobs on 1 workers)'"
  fi
  if [ -z "$why" ]; then
    pass "srun-grow-refused: $(grep -m1 '^set_ncpus(3) refused' "$out" | cut -c1-200) ($((SECONDS - start)) s)"
  else
    fail "srun-grow-refused: $why ($((SECONDS - start)) s); last lines of $out:"
    tail -n 25 "$out" | sed 's/^/    /'
  fi
}

runs=0
for name in $examples; do
  run_example "$name"
  [ "$name" = srun ] && check_srun_grow_refused
done

[ "$failed" = 0 ]  # cleanup (EXIT) stops the cluster and prints the summary line
