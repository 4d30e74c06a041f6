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
exec "${BUILD_DIR:-build}/cli/nas" search --workers=-1 "$@"
