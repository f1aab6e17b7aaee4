#!/usr/bin/env bash
# Installs the Debian 12 packages ppmpi needs, if any is missing: `apt-get update` once, then
# `apt-get install -y`. As root it runs apt-get directly; otherwise through sudo.
set -euo pipefail
packages=(
  build-essential cmake g++ pkg-config
  openmpi-bin libopenmpi-dev libpmix-dev libboost-serialization-dev libboost-mpi-dev
  pybind11-dev catch2 python3 python3-dev
  python3-cloudpickle python3-numpy python3-pytest python3-tqdm
  python3-mpi4py python3-matplotlib
  python3-pip python3-venv          # `pip install .` into a venv (the pip-install test)
  libpython3.11-testsuite           # CPython's concurrent.futures tests, run on ppmpi.Executor
  libssl-dev                        # the remote-server link's cryptography (OpenSSL)
  clang libclang-rt-14-dev          # libFuzzer and sanitizers for the fuzz tests
  iproute2 util-linux  # ip netns and unshare, for the simulated hosts of tests/cluster
)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install_deps: installing ${missing[*]}"
sudo=""
[ "$(id -u)" -eq 0 ] || sudo="sudo"
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update
$sudo apt-get install -y --no-install-recommends "${missing[@]}"
