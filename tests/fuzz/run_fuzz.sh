#!/usr/bin/env bash
# Builds the fuzzers with clang (tests/fuzz/CMakeLists.txt) and runs each for SECONDS on its
# corpus (tests/fuzz/corpus/<name>, read only: new inputs go to a temporary directory).
#   tests/fuzz/run_fuzz.sh BUILD_DIR [SECONDS] [NAME...]
# Fails on a crash, a leak, a sanitizer report or an allocation above 64 MiB (the inputs are at
# most 4 KiB: a larger allocation means a length was trusted before it was checked).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
build=$1
seconds=${2:-20}
shift $(( $# >= 2 ? 2 : $# ))
names=("$@")
[ ${#names[@]} -gt 0 ] || names=(decode_frame link_frames link_stream handshake)
cxx=$(command -v clang++ || command -v clang++-14)
mkdir -p "$build"
if ! { cmake -S "$here" -B "$build" -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=Debug &&
       cmake --build "$build" -j2; } >"$build/build.log" 2>&1; then
  tail -n 40 "$build/build.log"
  echo "fuzz: building the fuzzers failed (whole log: $build/build.log)"
  exit 1
fi
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
for name in "${names[@]}"; do
  mkdir -p "$scratch/$name"
  echo "fuzz_$name: ${seconds}s"
  "$build/fuzz_$name" -max_total_time="$seconds" -max_len=4096 -malloc_limit_mb=64 \
    -rss_limit_mb=1024 -timeout=10 -print_final_stats=1 -artifact_prefix="$scratch/" \
    "$scratch/$name" "$here/corpus/$name" 2>&1 | tail -n 12
  status=${PIPESTATUS[0]}
  if [ "$status" -ne 0 ]; then
    echo "fuzz_$name FAILED (exit $status); the input that did it:"
    ls -l "$scratch"/crash-* "$scratch"/leak-* "$scratch"/oom-* "$scratch"/timeout-* 2>/dev/null || true
    exit 1
  fi
done
echo "fuzz: all passed"
