#!/usr/bin/env bash
# The README's main command: installs what is needed, builds the service, and runs a real
# ProxylessNAS search on Fashion-MNIST on this machine through it (the embedded default): a
# local latency service, a coordinator (RocksDB in the result directory) and worker processes on
# loopback. Extra arguments go to `nas search` (e.g. --out results/my-run, --workers 2, or
# --workers 0 for the single-process search).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh nas nasctl coordinator nas_worker_main latency_server
# OpenBLAS's idle threads spin for ~2^28 cycles (~0.1 s) after each call, beside LibTorch's own
# threads on the same cores; sleeping at once made training and the search ~20-25% faster here
# with bit-identical results (the thread counts, hence the arithmetic, are unchanged;
# bench/RESULTS.md). OpenBLAS reads it when it loads, so it is set before the processes start
# (the workers inherit it); set it yourself to override.
export OPENBLAS_THREAD_TIMEOUT="${OPENBLAS_THREAD_TIMEOUT:-4}"
exec "${BUILD_DIR:-build}/cli/nas" search --workers=-1 "$@"
