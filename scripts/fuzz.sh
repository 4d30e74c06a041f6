#!/usr/bin/env bash
# Builds the fuzz targets (fuzz/) with clang, libFuzzer, AddressSanitizer and UBSan into
# build-fuzz/ (torch-free: NAS_WITH_TORCH=OFF), runs each for RUNS executions from its seed
# corpus, one target after another, and prints a table (target, executions, crashes, seconds).
# A crash, leak, timeout or out-of-memory input is copied into fuzz/regressions/<target>/, where
# the normal test suite replays it (fuzz.<target>) from then on.
# Usage: scripts/fuzz.sh [RUNS] [TARGET...]     RUNS defaults to 1,000,000; TARGETs to all.
# FUZZ_MAX_LEN (default 16384) bounds the inputs libFuzzer makes, FUZZ_TIMEOUT (default 10 s)
# one input's time, FUZZ_MAX_TIME (seconds, default 0: none) one target's whole run (it then
# stops before RUNS; the table says how many ran).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=${1:-1000000}
shift || true
BUILD_DIR=${FUZZ_BUILD_DIR:-build-fuzz}
# ccache: paths relative to the checkout, so that another clone (CI's) reuses these objects.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
bash scripts/setup.sh >/dev/null  # clang and libclang-rt-14-dev (libFuzzer) among the rest

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=()
  for f in fuzz/*.cc; do
    t=$(basename "$f" .cc)
    [ "$t" = replay_main ] || TARGETS+=("$t")
  done
fi

SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined"
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=Fuzz -DCMAKE_CXX_FLAGS_FUZZ="-O1 -g1" -DCMAKE_C_FLAGS_FUZZ="-O1 -g1" \
    -DCMAKE_CXX_FLAGS="$SAN -fsanitize=fuzzer-no-link -fno-omit-frame-pointer" \
    -DCMAKE_C_FLAGS="$SAN -fsanitize=fuzzer-no-link -fno-omit-frame-pointer" \
    -DCMAKE_EXE_LINKER_FLAGS="$SAN" \
    -DNAS_WITH_TORCH=OFF -DNAS_LIBFUZZER=ON -DNAS_BUILD_TESTS=OFF -DNAS_BUILD_BENCH=OFF \
    -DNAS_COORDINATOR_JEMALLOC=OFF >/dev/null
fi
cmake --build "$BUILD_DIR" -j "${NAS_BUILD_JOBS:-2}" --target "${TARGETS[@]/#/fuzz_}"

export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:strict_string_checks=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1}
TABLE="| target | executions | crashes | seconds | exec/s |
| --- | ---: | ---: | ---: | ---: |"
failed=0
for t in "${TARGETS[@]}"; do
  work="$BUILD_DIR/fuzz-run/$t"
  rm -rf "$work"
  mkdir -p "$work/corpus" "$work/artifacts"
  # The seeds and the regressions are the start; what libFuzzer adds stays in build-fuzz/.
  cp fuzz/corpus/"$t"/* "$work/corpus/" 2>/dev/null || true
  cp fuzz/regressions/"$t"/* "$work/corpus/" 2>/dev/null || true
  start=$(date +%s.%N)
  rc=0
  "$BUILD_DIR/fuzz/fuzz_$t" "$work/corpus" -runs="$RUNS" -max_len="${FUZZ_MAX_LEN:-16384}" \
    -timeout="${FUZZ_TIMEOUT:-10}" -max_total_time="${FUZZ_MAX_TIME:-0}" -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="$work/artifacts/" >"$work/log" 2>&1 || rc=$?
  end=$(date +%s.%N)
  secs=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.0f", b - a }')
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$work/log" | tail -1)
  execs=${execs:-0}
  crashes=0
  for a in "$work"/artifacts/*; do
    [ -f "$a" ] || continue
    crashes=$((crashes + 1))
    mkdir -p "fuzz/regressions/$t"
    cp "$a" "fuzz/regressions/$t/"
    echo "fuzz.sh: $t: $(basename "$a") -> fuzz/regressions/$t/ (log: $work/log)" >&2
  done
  if [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ]; then crashes="? (exit $rc, see $work/log)"; fi
  [ "$rc" -eq 0 ] || failed=1
  rate=$(awk -v e="$execs" -v s="$secs" 'BEGIN { printf "%.0f", (s > 0 ? e / s : e) }')
  TABLE+=$'\n'"| $t | $execs | $crashes | $secs | $rate |"
  echo "fuzz.sh: $t: $execs executions, $crashes crashes, $secs s" >&2
done
echo "$TABLE"
exit $failed
