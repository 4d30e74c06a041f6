#!/usr/bin/env bash
# Search throughput on this machine: the single-process search against the distributed one
# (local latency service, coordinator and 1 or 2 worker processes on loopback), same data and
# schedule, Fashion-MNIST. Reports training images per second of the search phase (weight steps x
# batch / search seconds, arch steps included) and the distributed/single overhead ratio.
# Usage: bench/search_throughput.sh [BUILD_DIR] [OUT_FILE]
set -euo pipefail
BIN=${1:-build}
OUT=${2:-}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CORES=$(nproc)
COMMON=(--train_subset 12000 --valid_size 2000 --test_subset 500 --warmup_epochs 1
        --search_epochs 2 --train_epochs 0 --baseline=false --batch_size 128 --progress=false
        --seed 3)
# One table for every run (profiled once, or reused from the cache).
"$BIN/cli/nas" profile --space fashion-mnist --device local-cpu --threads "$CORES" \
  --table_out "$WORK/table.json" >/dev/null
run() {  # run NAME FLAGS...: prints "NAME weight_steps seconds"
  local name=$1
  shift
  "$BIN/cli/nas" search --out "$WORK/$name" --latency_table "$WORK/table.json" "${COMMON[@]}" "$@" \
    >"$WORK/$name.log" 2>&1 || { cat "$WORK/$name.log"; exit 1; }
  python3 - "$WORK/$name/report.json" "$name" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(sys.argv[2], r["weight_steps"], r["seconds"]["search"])
PY
}
{
  run single --threads "$CORES"
  run dist1 --workers 1 --threads "$CORES"
  run dist2 --workers 2 --threads $((CORES / 2 > 0 ? CORES / 2 : 1))
  run single_again --threads "$CORES"
} >"$WORK/runs.txt"
python3 - "$WORK/runs.txt" "$CORES" <<'PY' | tee "${OUT:-/dev/null}"
import sys
rows = [l.split() for l in open(sys.argv[1])]
cores = int(sys.argv[2])
ips = {n: int(s) * 128 / float(t) for n, s, t in rows}
base = (ips["single"] + ips["single_again"]) / 2
print(f"Fashion-MNIST, 12000 train images, 1 warm-up + 2 joint epochs, batch 128, {cores} cores\n")
print("| run | workers x threads | weight steps | search s | images/s | time ratio vs single |")
print("|---|---|---|---|---|---|")
desc = {"single": f"in-process, {cores} threads", "dist1": f"1 x {cores}",
        "dist2": f"2 x {max(1, cores // 2)}", "single_again": f"in-process, {cores} threads (repeat)"}
for n, s, t in rows:
    print(f"| {n} | {desc[n]} | {s} | {float(t):.1f} | {ips[n]:.0f} | {base / ips[n]:.3f} |")
PY
