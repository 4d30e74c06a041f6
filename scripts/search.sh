#!/usr/bin/env bash
# The README's main command: installs what is needed, builds `nas`, and runs a real
# ProxylessNAS search on Fashion-MNIST on this machine (the embedded default).
# Extra arguments go to `nas search` (e.g. --out results/my-run).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh nas
exec "${BUILD_DIR:-build}/cli/nas" search "$@"
