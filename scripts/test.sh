#!/usr/bin/env bash
# The README's test command: installs what is needed, builds everything, runs every test; then
# the torch-free unit tests and fuzz replays again under AddressSanitizer + UBSan (clang, in
# build-asan/; scripts/sanitize.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
(cd "${BUILD_DIR:-build}" && ctest --output-on-failure -j 2 --timeout 1500)
bash scripts/sanitize.sh asan unit
