#!/usr/bin/env bash
# Installs the build into a scratch prefix and runs the demo from there, from another directory,
# with only the installed package on PYTHONPATH: alone and through the installed ppmpirun; then
# the installed ppmpi-server (loopback, no secret) serves one job and exits on its -t.
set -euo pipefail
cmake_cmd=$1 build=$2 python=$3 demo=$4
prefix=$(mktemp -d "${TMPDIR:-/tmp}/ppmpi-install.XXXXXX")
trap 'rm -rf "$prefix"' EXIT
"$cmake_cmd" --install "$build" --prefix "$prefix" >/dev/null
test -x "$prefix/lib/python3/dist-packages/ppmpi/ppmpi-worker"
test -x "$prefix/bin/ppmpirun"
test -x "$prefix/bin/ppmpi-server"
cd "$prefix"
export PYTHONPATH="$prefix/lib/python3/dist-packages"
"$python" "$demo" 2 | grep "Sum of primes below 100700 is 460217613" >/dev/null
unset PYTHONPATH
"$prefix/bin/ppmpirun" -np 3 "$demo" | grep "Sum of primes below 100700 is 460217613" >/dev/null
port=$("$python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$prefix/bin/ppmpi-server" -i 127.0.0.1 -p "$port" -w 1 -t 2 2>"$prefix/server.log" &
server=$!
for _ in $(seq 100); do grep -q "listening on" "$prefix/server.log" && break; sleep 0.2; done
PYTHONPATH="$prefix/lib/python3/dist-packages" "$python" -c "
import ppmpi
with ppmpi.Server(0, ppservers=('127.0.0.1:$port',)) as s:
    assert s.submit(abs, (-5,))() == 5
" || { kill "$server"; cat "$prefix/server.log"; exit 1; }
wait "$server"  # it exits by itself 2 s after the client left (-t 2)
echo "install-and-run: ok"
