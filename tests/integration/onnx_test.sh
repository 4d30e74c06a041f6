#!/usr/bin/env bash
# The ONNX export checked by independent readers: a tiny real `nas search` on Fashion-MNIST writes
# derived.onnx and baseline.onnx next to the LibTorch weights; `nas export` writes the same network
# with BatchNorm folded; `nas search --workers 1` (coordinator and worker processes) writes them
# too. Debian's python3-onnx checker (full_check, strict shape inference) passes
# on each; ONNX Runtime (npm onnxruntime-node, installed by scripts/setup.sh) gives the logits of
# our LibTorch forward (onnx_reference: Module::load + Network::forward in eval mode) on 64 real
# test images within 1e-4 (|diff| <= 1e-4 * max(1, |logit|)), with and without fold_bn. Malformed
# architecture and weights files are refused with the file and the problem named, and no output
# is left behind.
# Usage: onnx_test.sh BUILD_DIR
set -uo pipefail
BUILD=${1:?usage: onnx_test.sh BUILD_DIR}
NAS=$BUILD/cli/nas
REF=$BUILD/tests/worker/onnx_reference
HERE=$(cd "$(dirname "$0")" && pwd)
source "$HERE/lib.sh"  # WORK (removed at exit), check
TOL=1e-4
IMAGES=64

if [ ! -f /usr/share/datasets/fashion-mnist/t10k-images-idx3-ubyte.gz ]; then
  echo "SKIP: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
  exit 77
fi
# Debian's interpreter: python3-onnx installs into its dist-packages, which another python3 on
# PATH (pyenv, a virtualenv) does not see.
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
ORT_DIR=${NAS_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nas/onnxruntime-node}
"$PY" -c "import onnx, numpy" 2>"$WORK/py.err"
check "python3-onnx importable by $PY (scripts/setup.sh installs it)" test $? -eq 0
check "node and onnxruntime-node in $ORT_DIR (scripts/setup.sh installs them)" \
  test -x "$(command -v node)" -a -f "$ORT_DIR/node_modules/onnxruntime-node/package.json"

expect_error() {  # expect_error NAME PATTERN OUT COMMAND...: fails, says PATTERN, writes no OUT
  local name=$1 pattern=$2 out=$3
  shift 3
  local msg rc
  msg=$("$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$pattern" <<<"$msg" && [ ! -e "$out" ] && [ ! -e "$out.tmp" ]; then
    pass=$((pass + 1))
    echo "ok   $name: $(tail -1 <<<"$msg")"
  else
    fail=$((fail + 1))
    echo "FAIL $name (rc=$rc, output file $( [ -e "$out" ] && echo left || echo absent)): $msg"
  fi
}

RUN=$WORK/run
"$NAS" search --train_subset 1200 --valid_size 200 --test_subset 300 --warmup_epochs 1 \
  --search_epochs 1 --train_epochs 1 --batch_size 50 --arch_every 2 --threads 1 \
  --progress=false --cache_dir "$WORK/cache" --profile_repeats 6 --out "$RUN" >"$WORK/search.log" 2>&1
rc=$?
check "nas search exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -20 "$WORK/search.log"
for f in derived.onnx baseline.onnx; do check "nas search wrote $f" test -s "$RUN/$f"; done

"$NAS" export --arch "$RUN/architecture.json" --weights "$RUN/derived.pt" \
  --out "$WORK/folded.onnx" --fold_bn >"$WORK/export.log" 2>&1
rc=$?
check "nas export --fold_bn exits 0" test $rc -eq 0
[ $rc -eq 0 ] || cat "$WORK/export.log"
"$NAS" export --arch "$RUN/network.json" --weights "$RUN/derived.pt" \
  --out "$WORK/from_network_json.onnx" >"$WORK/export2.log" 2>&1
rc=$?
check "nas export from network.json exits 0" test $rc -eq 0
[ $rc -eq 0 ] || cat "$WORK/export2.log"

mkdir -p "$WORK/ref_derived" "$WORK/ref_baseline"
"$REF" logits "$RUN/search_space.json" "$RUN/network.json" "$RUN/derived.pt" $IMAGES \
  "$WORK/ref_derived"
check "LibTorch reference logits (derived)" test $? -eq 0
"$REF" logits "$RUN/search_space.json" largest "$RUN/baseline.pt" $IMAGES "$WORK/ref_baseline"
check "LibTorch reference logits (baseline)" test $? -eq 0

onnx_check() { "$PY" "$HERE/onnx_check.py" "$@"; }
check "python3-onnx checker: derived.onnx" onnx_check "$RUN/derived.onnx" --ref "$WORK/ref_derived"
check "python3-onnx checker: baseline.onnx" onnx_check "$RUN/baseline.onnx" --ref "$WORK/ref_baseline"
check "python3-onnx checker: folded (nas export --fold_bn)" onnx_check "$WORK/folded.onnx" --folded
check "python3-onnx checker: from network.json" onnx_check "$WORK/from_network_json.onnx"

ort() { node "$HERE/onnx_runtime_check.js" "$ORT_DIR/node_modules" "$1" "$2" $TOL; }
check "onnxruntime = LibTorch: derived.onnx" ort "$RUN/derived.onnx" "$WORK/ref_derived"
check "onnxruntime = LibTorch: derived, BatchNorm folded" ort "$WORK/folded.onnx" "$WORK/ref_derived"
check "onnxruntime = LibTorch: from network.json" ort "$WORK/from_network_json.onnx" "$WORK/ref_derived"
check "onnxruntime = LibTorch: baseline.onnx" ort "$RUN/baseline.onnx" "$WORK/ref_baseline"

# The distributed search: the final tasks' workers export the models, the coordinator keeps them
# as artifacts next to the weights, and `nas search --workers` writes them (as nasctl result).
DIST=$WORK/dist
# (--sampled_paths -1: no eval tasks for report.html's view; this test is about the final tasks.)
"$NAS" search --workers 1 --sampled_paths -1 --train_subset 1200 --valid_size 200 --test_subset 300 \
  --warmup_epochs 1 --search_epochs 1 --train_epochs 1 --batch_size 50 --arch_every 2 --threads 1 \
  --progress=false --latency_table "$RUN/latency_table.json" --out "$DIST" >"$WORK/dist.log" 2>&1
rc=$?
check "nas search --workers 1 exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -20 "$WORK/dist.log"
for f in derived.onnx baseline.onnx; do check "nas search --workers 1 wrote $f" test -s "$DIST/$f"; done
mkdir -p "$WORK/ref_dist"
"$REF" logits "$DIST/search_space.json" "$DIST/network.json" "$DIST/derived.pt" $IMAGES \
  "$WORK/ref_dist"
check "LibTorch reference logits (distributed derived)" test $? -eq 0
check "python3-onnx checker: distributed derived.onnx" onnx_check "$DIST/derived.onnx" --ref "$WORK/ref_dist"
check "onnxruntime = LibTorch: distributed derived.onnx" ort "$DIST/derived.onnx" "$WORK/ref_dist"

# Malformed input: each names the file and the problem, exits non-zero, writes nothing.
OUT=$WORK/bad.onnx
expect_error "weights of another network" "weights file $RUN/baseline.pt: .*weights of another network" \
  "$OUT" "$NAS" export --arch "$RUN/architecture.json" --weights "$RUN/baseline.pt" --out "$OUT"
"$REF" nan "$RUN/search_space.json" "$RUN/network.json" "$RUN/derived.pt" "$WORK/nan.pt"
expect_error "non-finite weights" "$WORK/nan.pt: tensor stem.conv.weight has 1 non-finite" \
  "$OUT" "$NAS" export --arch "$RUN/architecture.json" --weights "$WORK/nan.pt" --out "$OUT"
head -c 100000 "$RUN/derived.pt" >"$WORK/truncated.pt"
expect_error "truncated weights" "$WORK/truncated.pt: not a readable LibTorch archive" \
  "$OUT" "$NAS" export --arch "$RUN/architecture.json" --weights "$WORK/truncated.pt" --out "$OUT"
expect_error "missing weights file" "$WORK/none.pt: not found" \
  "$OUT" "$NAS" export --arch "$RUN/architecture.json" --weights "$WORK/none.pt" --out "$OUT"
cp "$RUN/architecture.json" "$WORK/architecture.json"
expect_error "architecture of another space" "space" \
  "$OUT" "$NAS" export --arch "$WORK/architecture.json" --space cifar10 --weights "$RUN/derived.pt" --out "$OUT"
echo '{"space": "fashion-mnist", "choices": [' >"$WORK/broken.json"
expect_error "malformed architecture JSON" "$WORK/broken.json" \
  "$OUT" "$NAS" export --arch "$WORK/broken.json" --weights "$RUN/derived.pt" --out "$OUT"
echo '{"space": "fashion-mnist", "choices": ["3x3_MBConv3"]}' >"$WORK/short.json"
expect_error "architecture with too few choices" "$WORK/short.json" \
  "$OUT" "$NAS" export --arch "$WORK/short.json" --weights "$RUN/derived.pt" --out "$OUT"
expect_error "no --out" "--out: required" "$OUT" \
  "$NAS" export --arch "$RUN/architecture.json" --weights "$RUN/derived.pt"

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
