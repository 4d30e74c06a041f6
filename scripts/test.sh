#!/usr/bin/env bash
# The README's test command: installs what is needed, builds everything, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
bash scripts/build.sh
cd "${BUILD_DIR:-build}"
# A test that crashes is run once more (SearchTest has shown a rare SIGSEGV under -j 2 load,
# not reproduced alone; see the issue notes) - a second failure still fails the run.
ctest --output-on-failure -j 2 --timeout 1500 --repeat until-pass:2
