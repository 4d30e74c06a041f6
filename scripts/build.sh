#!/usr/bin/env bash
# Configures and builds the project with Ninja (and ccache when present) into build/.
# Usage: scripts/build.sh [ninja targets...]
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD_DIR=${BUILD_DIR:-build}
# ccache: paths relative to the checkout, so that another clone of the repository (CI's) reuses
# what this one compiled.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo
fi
# Two jobs: LibTorch translation units take ~1 GiB each and this machine has 2 cores.
cmake --build "$BUILD_DIR" -j "${NAS_BUILD_JOBS:-2}" -- "$@"
