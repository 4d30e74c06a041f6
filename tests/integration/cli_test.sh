#!/usr/bin/env bash
# End-to-end tests of the `nas` binary as a user runs it: a tiny real search on Fashion-MNIST,
# then train/eval of its architecture, and clear errors (non-zero exit, the field named) for
# bad input. Usage: cli_test.sh path/to/nas
set -uo pipefail
NAS=${1:?usage: cli_test.sh path/to/nas}
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), check
expect_error() {  # expect_error NAME PATTERN COMMAND...
  local name=$1 pattern=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$pattern" <<<"$out"; then
    pass=$((pass + 1))
    echo "ok   $name"
  else
    fail=$((fail + 1))
    echo "FAIL $name (rc=$rc): $out"
  fi
}

TINY=(--train_subset 1200 --valid_size 200 --test_subset 300 --warmup_epochs 1 --search_epochs 2
      --train_epochs 1 --batch_size 50 --arch_every 2 --threads 1 --progress=false
      --cache_dir "$WORK/cache" --profile_repeats 6)

if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  "$NAS" search "${TINY[@]}" --out "$WORK/run" >"$WORK/search.log" 2>&1
  check "search exits 0" test $? -eq 0
  for f in architecture.json network.json alpha_history.jsonl derived.pt baseline.pt derived.onnx baseline.onnx report.json report.md; do
    check "search wrote $f" test -s "$WORK/run/$f"
  done
  check "report has both networks" grep -q "baseline (largest)" "$WORK/run/report.md"
  check "profiled table cached" test -n "$(ls "$WORK"/cache/*.json 2>/dev/null)"
  "$NAS" search "${TINY[@]}" --out "$WORK/run2" --baseline=false >"$WORK/search2.log" 2>&1
  check "second search reuses the cached table" grep -q "reusing" "$WORK/search2.log"
  # OpenBLAS's idle setting changes layer times: a table records it, and one cached under
  # another setting is profiled again.
  OPENBLAS_THREAD_TIMEOUT=7 "$NAS" search "${TINY[@]}" --out "$WORK/run3" --baseline=false \
    --train_epochs 0 >"$WORK/search3.log" 2>&1
  check "a table cached under another OpenBLAS idle setting is profiled again" \
    grep -q "profiling again" "$WORK/search3.log"
  check "the new table records the setting" \
    grep -q "OPENBLAS_THREAD_TIMEOUT=7" "$WORK/run3/latency_table.json"

  "$NAS" train --arch "$WORK/run/architecture.json" --epochs 1 --train_subset 1000 \
    --test_subset 300 --threads 1 --progress=false --out "$WORK/train" >"$WORK/train.log" 2>&1
  check "train exits 0" test $? -eq 0
  check "train wrote weights" test -s "$WORK/train/weights.pt"
  "$NAS" eval --arch "$WORK/run/architecture.json" --weights "$WORK/train/weights.pt" \
    --test_subset 300 --threads 1 >"$WORK/eval.log" 2>&1
  check "eval exits 0" test $? -eq 0
  check "eval prints accuracy" grep -q "test accuracy" "$WORK/eval.log"
  expect_error "eval with weights of another network" "loading weights" \
    "$NAS" eval --arch "$WORK/run/network.json" --weights "$WORK/run/baseline.pt" --test_subset 100
else
  echo "skip search/train/eval: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
fi

echo '{"space": "fashion-mnist", "choices": ["3x3_MBConv3"]}' >"$WORK/short.json"
expect_error "architecture with too few choices" "choices: 1 entries for 7 edges" \
  "$NAS" train --arch "$WORK/short.json"
echo '{"space": "fashion-mnist", "choices": ["3x3_MBConv3","4x4_MBConv3","3x3_MBConv3","Zero","3x3_MBConv3","3x3_MBConv3","3x3_MBConv3"]}' >"$WORK/bad.json"
expect_error "unknown candidate" "choices\[1\]" "$NAS" train --arch "$WORK/bad.json"
expect_error "unknown space" "no-such-space" "$NAS" search --space no-such-space --out "$WORK/x"
expect_error "unknown loss" "loss" "$NAS" search --loss mul#exp --out "$WORK/x"
echo '{"format": "nas-latency-table/1", "device": "d", "entries": {"Conv-input:1x1": {"count": 1, "mean": 1, "var": 0}}}' >"$WORK/table.json"
expect_error "malformed table key" "Conv-input:1x1" "$NAS" search --latency_table "$WORK/table.json" --out "$WORK/x"
expect_error "unknown command" "unknown command" "$NAS" frobnicate
echo '{"space": "fashion-mnist", "choices": ["3x3_MBConv3","3x3_MBConv3","3x3_MBConv3","Zero","3x3_MBConv3","3x3_MBConv3","3x3_MBConv3"]}' >"$WORK/good.json"
expect_error "missing dataset dir" "cannot open" "$NAS" train --arch "$WORK/good.json" --data_dir /nonexistent --dataset mnist

echo "$pass passed, $fail failed"
[ "$fail" -eq 0 ]
