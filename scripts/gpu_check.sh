#!/usr/bin/env bash
# The GPU check of issue 21: builds only what it needs (scripts/gpu_check/CMakeLists.txt: core/,
# the torch-only worker, the task runner's tests, bench/step_bench and bench/gpu_bench; no gRPC,
# protobuf, RocksDB) and runs, in this order, writing everything to a results file:
#   1. the task runner's tests (CPU) and its GPU tests (CUDA vs CPU agreement, inactive
#      candidates bitwise unchanged, weight-step memory vs candidates per edge);
#   2. the step ratio: supernet weight step vs the standalone network of the same path (step_bench);
#   3. the latency calibration check on this machine's CPU cores (gpu_bench calibration);
#   4. the cross-device search: GPU table vs CPU table (gpu_bench cross_device);
#   5. one worker's search, images/s on the GPU and on this machine's CPU (gpu_bench search).
#
# Three modes:
#   scripts/gpu_check.sh --prepare DIR
#       HERE (Debian 12, network): Debian's -dev packages that the build needs and the GPU machine
#       lacks (Abseil, GoogleTest, nlohmann-json, zlib), `apt-get download`ed and unpacked with
#       `dpkg -x` into DIR/prefix, and Fashion-MNIST's test files as DIR/data (their 10,000 images
#       serve as the training set too: the full training file alone is 26 MB). DIR must be inside
#       the repository and ignored by git (e.g. .gpu-deps, listed in .git/info/exclude) so that the
#       device tool can carry it.
#   scripts/gpu_check.sh [--deps DIR] [--out FILE] [--build BUILD_DIR]
#       ON THE GPU MACHINE: PyTorch with CUDA (LibTorch from the torch package:
#       python3 -c 'import torch; print(torch.utils.cmake_prefix_path)'), CUDA, CMake, Ninja.
#       Builds with -DNAS_TORCH_CUDA=ON and runs the checks above. Default DIR .gpu-deps,
#       FILE gpu_check.txt, BUILD_DIR /tmp/nas-gpu-check.
#   scripts/gpu_check.sh --cpu-dry-run [--deps DIR] [--out FILE] [--build BUILD_DIR]
#       HERE: the same build against Debian's CPU LibTorch 1.13 with the carried prefix instead of
#       the system's Abseil/GoogleTest/json (checked), the tests (the GPU ones skip) and every
#       benchmark on the CPU with tiny sizes. Proves the no-gRPC build and the script.
#
# Exit status: 0 when everything ran and passed; 1 when a test failed or a part did not run
# (the results file says which); 2 for usage errors.
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD

MODE=gpu
DEPS=.gpu-deps
OUTFILE=gpu_check.txt
BUILD=/tmp/nas-gpu-check
while [ $# -gt 0 ]; do
  case "$1" in
    --prepare) MODE=prepare; DEPS=${2:?--prepare DIR}; shift ;;
    --cpu-dry-run) MODE=dry ;;
    --deps) DEPS=${2:?--deps DIR}; shift ;;
    --out) OUTFILE=${2:?--out FILE}; shift ;;
    --build) BUILD=${2:?--build DIR}; shift ;;
    -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1 (--help)" >&2; exit 2 ;;
  esac
  shift
done
DEPS=$(cd "$(dirname "$DEPS")" 2>/dev/null && pwd)/$(basename "$DEPS")
PREFIX=$DEPS/prefix
LIBDIR=$PREFIX/usr/lib/x86_64-linux-gnu

if [ "$MODE" = prepare ]; then
  set -e
  DEBS="libabsl-dev libabsl20220623 libgtest-dev nlohmann-json3-dev zlib1g-dev"
  rm -rf "$DEPS"
  mkdir -p "$DEPS/debs" "$PREFIX" "$DEPS/data"
  (cd "$DEPS/debs" && apt-get download $DEBS)
  for f in "$DEPS"/debs/*.deb; do dpkg -x "$f" "$PREFIX"; done
  rm -rf "$DEPS/debs" "$PREFIX/usr/share/doc" "$PREFIX/usr/share/man" "$PREFIX/usr/share/lintian"
  SRC=/usr/share/datasets/fashion-mnist
  for kind in images-idx3-ubyte labels-idx1-ubyte; do
    cp "$SRC/t10k-$kind.gz" "$DEPS/data/t10k-$kind.gz"
    cp "$SRC/t10k-$kind.gz" "$DEPS/data/train-$kind.gz"
  done
  echo "prepared $DEPS ($(du -sh "$DEPS" | cut -f1)): $DEBS; Fashion-MNIST t10k as data"
  if git check-ignore -q "$DEPS" 2>/dev/null; then
    echo "$DEPS is ignored by git: carry it (device tool: carry [\"${DEPS#$ROOT/}\"])"
  else
    echo "warning: $DEPS is not ignored by git; add it to .git/info/exclude before carrying it" >&2
  fi
  exit 0
fi

[ -d "$PREFIX/usr/include/absl" ] || { echo "gpu_check.sh: no $PREFIX (run --prepare here first)" >&2; exit 2; }
case "$OUTFILE" in /*) ;; *) OUTFILE=$ROOT/$OUTFILE ;; esac
mkdir -p "$(dirname "$OUTFILE")" "$BUILD"
: > "$OUTFILE"
LOGDIR=$BUILD/logs
mkdir -p "$LOGDIR"
START=$(date +%s)
FAILED=0
say() { echo "$*" | tee -a "$OUTFILE"; }
elapsed() { echo "$(( $(date +%s) - START )) s"; }
# run NAME TIMEOUT CMD...: runs a step, its output into the results file; a failure is counted.
run() {
  local name=$1 limit=$2
  shift 2
  say ""
  say "=== $name ($(elapsed) in) ==="
  timeout "$limit" "$@" 2>&1 | tee -a "$OUTFILE" > "$LOGDIR/$name.log"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" != 0 ]; then
    FAILED=$((FAILED + 1))
    say "=== $name FAILED (exit $rc$([ "$rc" = 124 ] && echo ', timed out')) ==="
  fi
  return 0
}

export LD_LIBRARY_PATH=$LIBDIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}
export NAS_TEST_DATA_DIR=$DEPS/data
CMAKE_ARGS=(-G Ninja -DCMAKE_BUILD_TYPE=Release "-DCMAKE_PREFIX_PATH=$PREFIX/usr"
  -DCMAKE_FIND_PACKAGE_PREFER_CONFIG=ON "-DZLIB_INCLUDE_DIR=$PREFIX/usr/include"
  "-DZLIB_LIBRARY=$LIBDIR/libz.a")
if [ "$MODE" = gpu ]; then
  PY=python3
  [ -x /opt/torch/.venv/bin/python3 ] && PY=/opt/torch/.venv/bin/python3
  TORCH_PREFIX=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)')
  CMAKE_ARGS+=("-DTorch_DIR=$TORCH_PREFIX/Torch" -DNAS_TORCH_CUDA=ON)
  [ -d /usr/local/cuda ] && CMAKE_ARGS+=(-DCUDAToolkit_ROOT=/usr/local/cuda)
  JOBS=$(nproc)
  DEVICE=cuda
  say "# GPU check (issue 21) on $(hostname), $(date -u +%FT%TZ)"
  say "GPU: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | head -1)"
  say "torch: $("$PY" -c 'import torch; print(torch.__version__, "cuda", torch.version.cuda, "cxx11abi", torch._C._GLIBCXX_USE_CXX11_ABI, "cuda available", torch.cuda.is_available())' 2>&1)"
  SIZES_SEARCH=(--train_subset=5000 --valid_size=1000 --warmup_epochs=1 --search_epochs=3)
  SIZES_PROFILE=(--repeats=50 --passes=3 --samples=40 --calibration_networks=20)
  STEP_ARGS=(--device=cuda --paths=6 --steps=20 --batch=128 --threads=0)
  CROSS=
else
  CMAKE_ARGS+=("-DTorch_DIR=${NAS_DRY_TORCH_DIR:-/usr/lib/x86_64-linux-gnu/cmake/Torch}")
  JOBS=${NAS_BUILD_JOBS:-2}
  DEVICE=cpu
  say "# GPU check, CPU dry run on $(hostname), $(date -u +%FT%TZ): Debian's CPU LibTorch, tiny sizes"
  SIZES_SEARCH=(--train_subset=600 --valid_size=200 --warmup_epochs=1 --search_epochs=1 --batch=64)
  SIZES_PROFILE=(--repeats=5 --passes=1 --samples=4 --calibration_networks=4)
  STEP_ARGS=(--device=cpu --paths=1 --steps=2 --batch=32 --threads=2 --timing_only)
  CROSS=--gpu_backend=cpu
fi
say "cores: $(nproc); deps: $DEPS ($(du -shL "$DEPS" | cut -f1))"

# --- build ---
say ""
say "=== build ($(elapsed) in) ==="
if ! cmake -S scripts/gpu_check -B "$BUILD" "${CMAKE_ARGS[@]}" > "$LOGDIR/configure.log" 2>&1; then
  say "configure FAILED:"; tail -40 "$LOGDIR/configure.log" | tee -a "$OUTFILE"
  exit 1
fi
grep -E "gpu_check: LibTorch" "$LOGDIR/configure.log" | tee -a "$OUTFILE"
# The carried packages, not the machine's, must have been found.
for pkg in absl GTest nlohmann_json; do
  dir=$(grep -E "^${pkg}_DIR:" "$BUILD/CMakeCache.txt" | cut -d= -f2-)
  say "$pkg: $dir"
  case "$(realpath -m "$dir")" in "$(realpath -m "$PREFIX")"/*) ;;
    *) say "$pkg was not found in the carried prefix"; FAILED=$((FAILED + 1)) ;; esac
done
if grep -qiE "grpc|protobuf::libprotobuf|rocksdb" "$BUILD/build.ninja"; then
  say "the build links gRPC/protobuf/RocksDB (it must not)"; FAILED=$((FAILED + 1))
fi
if ! cmake --build "$BUILD" -j "$JOBS" > "$LOGDIR/build.log" 2>&1; then
  say "build FAILED:"; grep -E "error|Error" "$LOGDIR/build.log" | head -30 | tee -a "$OUTFILE"
  tail -20 "$LOGDIR/build.log" >> "$OUTFILE"
  exit 1
fi
say "built in $(elapsed)"

# --- 1. tests ---
run task_runner_tests 150 "$BUILD/task_runner_tests" --gtest_brief=1
run task_runner_cuda_tests 150 "$BUILD/task_runner_cuda_tests"

# --- 2. step ratio (target <= 1.05) ---
run step_bench 90 "$BUILD/step_bench" "${STEP_ARGS[@]}"

# --- 3-5. calibration, cross-device search, search images/s ---
BENCH_OUT=$BUILD/gpu_bench_out
BENCH=("$BUILD/gpu_bench" --device=$DEVICE --data_dir="$DEPS/data" --out_dir="$BENCH_OUT"
  "${SIZES_SEARCH[@]}" "${SIZES_PROFILE[@]}")
run gpu_bench_calibration 150 "${BENCH[@]}" --parts=calibration
run gpu_bench_cross_device 150 "${BENCH[@]}" --parts=cross_device $CROSS
run gpu_bench_search 120 "${BENCH[@]}" --parts=search
for t in "$BENCH_OUT"/gpu_table.json "$BENCH_OUT"/cpu_table.json; do
  [ -f "$t" ] && cp "$t" "$(dirname "$OUTFILE")/" 2>/dev/null
done

say ""
say "=== done in $(elapsed): $FAILED failed step(s) ==="
[ "$FAILED" = 0 ]
