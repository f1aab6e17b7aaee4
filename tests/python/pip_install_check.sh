#!/usr/bin/env bash
# pip's way, as a Python user installs: a clean copy of the current sources (the files git
# tracks or would, uncommitted ones included; no build trees) pip-installed offline into a
# fresh venv of Debian's python3 (--system-site-packages, --no-build-isolation --no-index).
# Then, from another directory and with nothing but the venv: jobs alone, under mpirun and
# under the venv's ppmpirun, each checking that every worker runs in the venv
# (venv_driver.py); `python -m ppmpi --version` and `--check`; `ppmpi-server --help`.
set -euo pipefail
source_dir=$1 base_python=$2 version=$3 mpirun=$4
here=$(cd "$(dirname "$0")" && pwd)
scratch=$(mktemp -d "${TMPDIR:-/tmp}/ppmpi-pip.XXXXXX")
trap 'rm -rf "$scratch"' EXIT
# pip's and the build's temporary files too, so that the trap removes them.
mkdir "$scratch/tmp"
export TMPDIR="$scratch/tmp"
# The test environment points PYTHONPATH at the build tree: only the venv's ppmpi may be used.
unset PYTHONPATH
export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
step() { echo "== $*"; }
# Every step ends by this script's own deadline, before CTest's TIMEOUT (600 s) kills it and
# the trap with it.
deadline=$(( $(date +%s) + 570 ))
bounded() {
  local left=$(( deadline - $(date +%s) ))
  if [ "$left" -le 0 ] || ! timeout --kill-after=5 "$left" "$@"; then
    echo "FAILED (or out of time: the test's deadline is 570 s): $*"
    return 1
  fi
}

step "copy the sources"
mkdir "$scratch/src"
if git -C "$source_dir" rev-parse --is-inside-work-tree >/dev/null 2>&1; then
  # -co: tracked and untracked-but-not-ignored; a tracked file deleted in the tree is skipped.
  git -C "$source_dir" ls-files -z -co --exclude-standard |
    while IFS= read -r -d '' f; do [ -e "$source_dir/$f" ] && printf '%s\0' "$f"; done |
    tar -C "$source_dir" --null -T - -cf - | tar -C "$scratch/src" -xf -
else
  tar -C "$source_dir" --exclude=./build --exclude='./build-*' --exclude=.git -cf - . |
    tar -C "$scratch/src" -xf -
fi

step "venv and pip install (offline)"
venv="$scratch/venv"
bounded "$base_python" -m venv --system-site-packages "$venv"
py="$venv/bin/python"
start=$(date +%s)
export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-2}
bounded "$py" -m pip install --no-build-isolation --no-index --quiet "$scratch/src"
echo "pip install: $(( $(date +%s) - start )) s"
worker=$(echo "$venv"/lib/python3*/site-packages/ppmpi/ppmpi-worker)
test -x "$worker" || { echo "FAILED: $worker is not an executable file"; exit 1; }
for script in ppmpirun ppmpi-server; do
  test -x "$venv/bin/$script" || { echo "FAILED: no console script $venv/bin/$script"; exit 1; }
done

mkdir "$scratch/elsewhere"
cd "$scratch/elsewhere"
cp "$here/venv_driver.py" driver.py

step "a job alone (spawned workers)"
bounded "$py" driver.py "$venv"
step "python -m ppmpi --version"
test "$("$py" -m ppmpi --version)" = "ppmpi $version"
step "python -m ppmpi --check"
bounded "$py" -m ppmpi --check 2>&1 | tee check.log
test "$(tail -n 1 check.log)" = "OK"
step "ppmpirun -np 3 (ppmpi-worker ranks)"
bounded "$venv/bin/ppmpirun" -np 3 driver.py "$venv"
step "mpirun -np 3 (python world ranks)"
# mpirun --enable-recovery exits 0 whatever rank 0 did: the driver's last line says.
bounded "$mpirun" --enable-recovery -np 3 "$py" driver.py "$venv" 2>&1 | tee mpirun.log
if ! grep -q "^OK: " mpirun.log || grep -q "^FAILED" mpirun.log; then exit 1; fi
step "ppmpi-server --help"
"$venv/bin/ppmpi-server" --help | grep -q "^Usage: ppmpi-server"
echo "pip-install: ok"
