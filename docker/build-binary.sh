#!/usr/bin/env bash
# The build step of every docker/Dockerfile.*: configures the project with Ninja (no tests, no
# benchmarks) and builds only the executables named on the command line, found by their output
# file name whatever their CMake target is called, then copies them into $OUT_DIR.
#
#   docker/build-binary.sh latency_server latency_ctl
#   CMAKE_ARGS=-DCMAKE_PREFIX_PATH=/opt/libtorch docker/build-binary.sh nas_worker
#
# Environment: SRC_DIR (/src), BUILD_DIR (/build), OUT_DIR (/out/bin), BUILD_JOBS (4; each
# LibTorch translation unit takes about 1 GiB), CMAKE_ARGS (extra configure arguments).
set -euo pipefail
SRC=${SRC_DIR:-/src}
BUILD=${BUILD_DIR:-/build}
OUT=${OUT_DIR:-/out/bin}
[ $# -gt 0 ] || { echo "usage: build-binary.sh EXECUTABLE..." >&2; exit 2; }

# shellcheck disable=SC2086  # CMAKE_ARGS is a list of arguments
cmake -S "$SRC" -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DNAS_BUILD_TESTS=OFF -DNAS_BUILD_BENCH=OFF ${CMAKE_ARGS:-}

outputs=()
for name in "$@"; do
  path=$(ninja -C "$BUILD" -t targets all | awk -F': ' -v n="$name" \
    '$2 ~ /EXECUTABLE_LINKER/ && ($1 == n || substr($1, length($1) - length(n)) == "/" n) {print $1; exit}')
  if [ -z "$path" ]; then
    echo "build-binary: the build has no executable named $name" >&2
    exit 1
  fi
  outputs+=("$path")
done
ninja -C "$BUILD" -j "${BUILD_JOBS:-4}" "${outputs[@]}"
mkdir -p "$OUT"
for p in "${outputs[@]}"; do install -m 0755 "$BUILD/$p" "$OUT/"; done
