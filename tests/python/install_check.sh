#!/usr/bin/env bash
# Installs the build into a scratch prefix and runs the demo from there, from another directory,
# with only the installed package on PYTHONPATH: alone and through the installed ppmpirun.
set -euo pipefail
cmake_cmd=$1 build=$2 python=$3 demo=$4
prefix=$(mktemp -d "${TMPDIR:-/tmp}/ppmpi-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
"$cmake_cmd" --install "$build" --prefix "$prefix" >/dev/null
test -x "$prefix/lib/python3/dist-packages/ppmpi/ppmpi-worker"
test -x "$prefix/bin/ppmpirun"
cd "$prefix"
export PYTHONPATH="$prefix/lib/python3/dist-packages"
"$python" "$demo" 2 | grep "Sum of primes below 100700 is 460217613" >/dev/null
unset PYTHONPATH
"$prefix/bin/ppmpirun" -np 3 "$demo" | grep "Sum of primes below 100700 is 460217613" >/dev/null
echo "install-and-run: ok"
