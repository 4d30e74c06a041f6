#!/usr/bin/env bash
# Search throughput on this machine: the single-process search against the distributed one
# (local latency service, coordinator and 1 or 2 worker processes on loopback), same data and
# schedule, Fashion-MNIST. Reports training images per second of the search phase (weight steps x
# batch / search seconds, arch steps included) and the distributed/single time ratio.
#
# This VM's speed drifts by up to 40% between consecutive minutes, so every distributed run is
# bracketed by single-process runs and its ratio is taken against the mean of the two around it:
#   single, 1 worker (synced commits), single, 1 worker --pipelined_commits, single, 2 workers,
#   single, ... for ROUNDS rounds; the summary gives each configuration's median ratio.
# Also checked per run: the one-worker search's alpha_history.jsonl is byte-identical to the
# single process's (same seed, same trajectory), and the worker's seconds spent uploading.
# Usage: bench/search_throughput.sh [BUILD_DIR] [OUT_FILE] [ROUNDS (default 1)]
set -euo pipefail
BIN=${1:-build}
OUT=${2:-}
ROUNDS=${3:-1}
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
CORES=$(nproc)
# As the README's main command runs them (scripts/search.sh): OpenBLAS's idle threads sleep at
# once instead of spinning beside LibTorch's (RESULTS: "OpenBLAS's idle threads").
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
COMMON=(--train_subset 12000 --valid_size 2000 --test_subset 500 --warmup_epochs 1
        --search_epochs 2 --train_epochs 0 --baseline=false --batch_size 128 --progress=false
        --seed 3)
# One table for every run (profiled once, or reused from the cache).
"$BIN/cli/nas" profile --space fashion-mnist --device local-cpu --threads "$CORES" \
  --table_out "$WORK/table.json" >/dev/null
N=0
run() {  # run KIND FLAGS...: appends "KIND seq weight_steps seconds upload_s same_alpha"
  local kind=$1 dir
  shift
  N=$((N + 1))
  dir="$WORK/run$N"
  "$BIN/cli/nas" search --out "$dir" --latency_table "$WORK/table.json" "${COMMON[@]}" "$@" \
    >"$dir.log" 2>&1 || { cat "$dir.log"; exit 1; }
  [ "$kind" = single ] && cp "$dir/alpha_history.jsonl" "$WORK/single_alpha.jsonl"
  python3 - "$dir" "$kind" "$N" "$WORK/single_alpha.jsonl" >>"$WORK/runs.txt" <<'PY'
import filecmp, glob, json, os, sys
d, kind, seq, single_alpha = sys.argv[1:5]
r = json.load(open(os.path.join(d, "report.json")))
upload = 0.0
for f in glob.glob(os.path.join(d, "logs", "worker-*.tasks.jsonl")):
    upload += sum(json.loads(l).get("send_seconds", 0) for l in open(f) if l.strip())
same = "-"
if kind == "dist1":
    same = "yes" if filecmp.cmp(os.path.join(d, "alpha_history.jsonl"), single_alpha,
                                shallow=False) else "NO"
print(kind, seq, r["weight_steps"], r["seconds"]["search"], f"{upload:.3f}", same)
PY
  rm -rf "$dir"
}
: >"$WORK/runs.txt"
run single --threads "$CORES"
for ((i = 0; i < ROUNDS; i++)); do
  run dist1 --workers 1 --threads "$CORES"
  run single --threads "$CORES"
  run dist1_pipelined --workers 1 --threads "$CORES" --pipelined_commits
  run single --threads "$CORES"
  run dist2 --workers 2 --threads $((CORES / 2 > 0 ? CORES / 2 : 1))
  run single --threads "$CORES"
done
python3 - "$WORK/runs.txt" "$CORES" "$ROUNDS" <<'PY' | tee "${OUT:-/dev/null}"
import statistics, sys
rows = [l.split() for l in open(sys.argv[1])]
cores, rounds = int(sys.argv[2]), int(sys.argv[3])
batch = 128
print(f"Fashion-MNIST, 12000 train images, 1 warm-up + 2 joint epochs, batch {batch}, {cores} "
      f"cores, {rounds} bracketed round(s)\n")
desc = {"single": f"in-process, {cores} threads", "dist1": f"1 worker x {cores}, synced",
        "dist1_pipelined": f"1 worker x {cores}, pipelined",
        "dist2": f"2 workers x {max(1, cores // 2)}"}
print("| # | run | weight steps | search s | images/s | ratio vs singles around | "
      "upload s | alpha = single's |")
print("|---|---|---|---|---|---|---|---|")
ratios = {}
for i, (kind, seq, steps, secs, upload, same) in enumerate(rows):
    secs = float(secs)
    ips = int(steps) * batch / secs
    ratio = "-"
    if kind != "single":
        around = (float(rows[i - 1][3]) + float(rows[i + 1][3])) / 2
        r = secs / around
        ratios.setdefault(kind, []).append(r)
        ratio = f"{r:.3f}"
    up = "-" if kind == "single" else upload
    print(f"| {seq} | {desc[kind]} | {steps} | {secs:.2f} | {ips:.0f} | {ratio} | {up} | {same} |")
singles = [float(r[3]) for r in rows if r[0] == "single"]
print(f"\nsingle-process search s: median {statistics.median(singles):.2f}, "
      f"range {min(singles):.2f}-{max(singles):.2f}")
for kind, rs in ratios.items():
    print(f"{desc[kind]}: median ratio {statistics.median(rs):.3f} "
          f"(range {min(rs):.3f}-{max(rs):.3f}, {len(rs)} runs)")
if any(r[5] == "NO" for r in rows):
    print("ERROR: a one-worker search left the single process's alpha trajectory")
    sys.exit(1)
PY
