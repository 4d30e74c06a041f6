#!/usr/bin/env bash
# Builds the torch-free parts (proto, core, coordinator, latency service, their tests and the
# fuzz replays; NAS_WITH_TORCH=OFF) with clang and a sanitizer, and runs their tests.
#   asan: AddressSanitizer (with LeakSanitizer; scripts/lsan.supp says what it suppresses and
#         why) + UndefinedBehaviorSanitizer, every UB report fatal
#         (-fno-sanitize-recover=undefined), into build-asan/;
#   tsan: ThreadSanitizer into build-tsan/, every program linked with
#         tests/sanitizers/tsan_absl_sync.cc (which tells TSan about Abseil's synchronisation:
#         Debian's Abseil is not instrumented) and scripts/tsan.supp (what else it suppresses, why).
# Scope: `unit` (default) runs the GoogleTest cases (named Suite.Test) and the fuzz replays
# (fuzz.<target>); `all` also the script tests that work without LibTorch (a real Prometheus
# scraping the latency server, the dashboards).
# Usage: scripts/sanitize.sh asan|tsan [unit|all]     (CI: scripts/test.sh runs `asan unit`)
# Debian's gRPC, protobuf, Abseil and RocksDB are not instrumented: ASan still checks every
# access our code makes; TSan sees no synchronisation inside them, hence the two files above.
set -euo pipefail
cd "$(dirname "$0")/.."
MODE=${1:?usage: sanitize.sh asan|tsan [unit|all]}
SCOPE=${2:-unit}
case "$MODE" in
  asan) SAN="-fsanitize=address,undefined -fno-sanitize-recover=undefined" ;;
  tsan) SAN="-fsanitize=thread" ;;
  *) echo "sanitize.sh: mode must be asan or tsan, got '$MODE'" >&2; exit 2 ;;
esac
case "$SCOPE" in
  unit) TESTS=(-R '\.') ;;
  all) TESTS=() ;;
  *) echo "sanitize.sh: scope must be unit or all, got '$SCOPE'" >&2; exit 2 ;;
esac
command -v clang++ >/dev/null || { echo "sanitize.sh: clang++ missing (scripts/setup.sh installs it)" >&2; exit 1; }
BUILD_DIR=${SANITIZE_BUILD_DIR:-build-$MODE}
# ccache: paths relative to the checkout, so that another clone (CI's) reuses these objects.
export CCACHE_BASEDIR=${CCACHE_BASEDIR:-$PWD} CCACHE_NOHASHDIR=${CCACHE_NOHASHDIR:-1}
start=$(date +%s)

# -O1 keeps the instrumented tests fast enough; -fno-omit-frame-pointer and -g1 give usable
# stacks. jemalloc is left out (the sanitizers bring their own allocator), and so are the
# benchmarks.
FLAGS="$SAN -fno-omit-frame-pointer"
LINK="$SAN"
if [ "$MODE" = tsan ]; then
  mkdir -p "$BUILD_DIR"
  shim="$PWD/$BUILD_DIR/tsan_absl_sync.o"
  if [ ! -f "$shim" ] || [ tests/sanitizers/tsan_absl_sync.cc -nt "$shim" ]; then
    clang++ -std=c++17 -O1 -g1 -fPIC -c tests/sanitizers/tsan_absl_sync.cc -o "$shim"
  fi
  LINK="$SAN $shim -ldl"
fi
if [ ! -f "$BUILD_DIR/build.ninja" ]; then
  cmake -S . -B "$BUILD_DIR" -G Ninja \
    -DCMAKE_C_COMPILER=clang -DCMAKE_CXX_COMPILER=clang++ \
    -DCMAKE_BUILD_TYPE=Sanitize \
    -DCMAKE_CXX_FLAGS_SANITIZE="-O1 -g1" -DCMAKE_C_FLAGS_SANITIZE="-O1 -g1" \
    -DCMAKE_CXX_FLAGS="$FLAGS" -DCMAKE_C_FLAGS="$FLAGS" \
    -DCMAKE_EXE_LINKER_FLAGS="$LINK" -DCMAKE_SHARED_LINKER_FLAGS="$SAN" \
    -DNAS_WITH_TORCH=OFF -DNAS_COORDINATOR_JEMALLOC=OFF -DNAS_BUILD_BENCH=OFF
fi
cmake --build "$BUILD_DIR" -j "${NAS_BUILD_JOBS:-2}"
built=$(date +%s)

# halt_on_error: the first report fails the test. detect_leaks stays on (LeakSanitizer).
export ASAN_OPTIONS=${ASAN_OPTIONS:-halt_on_error=1:detect_stack_use_after_return=1:strict_string_checks=1}
export LSAN_OPTIONS=${LSAN_OPTIONS:-suppressions=$PWD/scripts/lsan.supp:print_suppressions=0}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}
# ignore_noninstrumented_modules: memcpy & co. called from inside Debian's (uninstrumented)
# libraries are not checked - their own locking is invisible to TSan, e.g. Abseil's deadlock
# detector copying its graph under its internal spinlock; our code's accesses all are.
export TSAN_OPTIONS=${TSAN_OPTIONS:-halt_on_error=1:second_deadlock_stack=1:ignore_noninstrumented_modules=1:suppressions=$PWD/scripts/tsan.supp}
status=0
(cd "$BUILD_DIR" && ctest --output-on-failure -j "${NAS_TEST_JOBS:-2}" --timeout 1500 "${TESTS[@]}") ||
  status=$?
done_at=$(date +%s)
echo "sanitize.sh $MODE $SCOPE: build $((built - start)) s, tests $((done_at - built)) s, exit $status"
exit $status
