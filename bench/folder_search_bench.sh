#!/usr/bin/env bash
# What streaming an image folder costs a search (issue 22): `nas search --dataset folder` on a
# 96x96 space, the folder decoded once into memory (A) against the same search streaming it
# (B: --stream_images, each batch decoded during the search on --loader_threads threads beside
# the step's --threads; random resized crop + flip for training batches, resize + centre crop
# for validation batches). Same files, splits, seed and schedule in both; one latency table,
# profiled once, for every run. Reports per run the search phase's seconds (report.json
# "seconds.search": first step to last, loading excluded) and images/s = (weight_steps +
# arch_steps) x batch_size / seconds, then B/A per pair and the median.
#
# This VM's speed drifts by 30-55% within minutes, so the runs alternate, ABBA across pairs
# (pair 1 A then B, pair 2 B then A, ...), and each run records what else used the machine:
# the 1-minute load average before and after (it includes this run's own threads) and the cores
# other processes used during it (busy time from /proc/stat less this run's CPU time), and the
# whole run's CPU seconds (user + system, loading and evaluation included) against its wall
# seconds.
#
# The folder (made when missing): `loader_bench --make_folder`, 2,000 JPEGs of 400x300 (quality
# 90, 10 class folders), as RESULTS.md's loader benchmark. The space: the cifar10 preset with a
# 96x96 input and a stride-2 stem (README: "a small space at 96x96").
#
# VARIANTS="A B a b" adds the same two modes run on glibc's default allocator (a: in memory, b:
# streamed; GLIBC_TUNABLES=glibc.malloc.tcache_count=7, glibc's default value, which makes `nas`
# leave glibc as it is instead of keeping its blocks in the heap, core/malloc_tuning.h), and
# reports A/a and B/b too. The variants run in the listed order in odd pairs, reversed in even.
# Usage: bench/folder_search_bench.sh BUILD_DIR OUT_DIR [PAIRS (default 3)]
#   env: THREADS (2), LOADER_THREADS (2), FOLDER (OUT_DIR/folder), TRAIN_SUBSET (512),
#        VALID_SIZE (64), ARCH_EVERY (2), ARCH_LR (1e-9), SEED (1), VARIANTS ("A B")
# ARCH_LR: the arch steps run (forward, backward, their validation batches decoded) but move
# alpha by ~1e-9, so that both modes sample the same paths: at the search's own arch_lr
# (ARCH_LR=0.015) the two modes' different pixels (random resized crops against centre crops)
# move alpha differently, and the paths sampled after the first arch step - whose costs differ
# by several times (a Zero block against a 7x7 MBConv6) - differ with it.
set -euo pipefail
BIN=${1:?usage: folder_search_bench.sh BUILD_DIR OUT_DIR [PAIRS]}
OUT=${2:?usage: folder_search_bench.sh BUILD_DIR OUT_DIR [PAIRS]}
PAIRS=${3:-3}
THREADS=${THREADS:-2}
LOADER_THREADS=${LOADER_THREADS:-2}
FOLDER=${FOLDER:-$OUT/folder}
TRAIN_SUBSET=${TRAIN_SUBSET:-512}
VALID_SIZE=${VALID_SIZE:-64}
SEED=${SEED:-1}
ARCH_EVERY=${ARCH_EVERY:-2}
ARCH_LR=${ARCH_LR:-1e-9}
read -r -a VARIANT_LIST <<<"${VARIANTS:-A B}"
for v in "${VARIANT_LIST[@]}"; do
  case "$v" in A | B | a | b) ;; *) echo "VARIANTS: '$v' is not A, B, a or b" >&2; exit 2 ;; esac
done
BATCH=64
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
export OPENBLAS_THREAD_TIMEOUT=${OPENBLAS_THREAD_TIMEOUT:-4}
mkdir -p "$OUT"

if [ ! -d "$FOLDER" ]; then
  "$BIN/bench/loader_bench" --make_folder "$FOLDER" --count 2000 --width 400 --height 300
fi
"$BIN/cli/nas" spaces --print cifar10 >"$OUT/cifar10.json"
"$PY" -c 'import json, sys; s = json.load(open(sys.argv[1])); s["name"] = "lab96"
s["input"].update(height=96, width=96); s["stem"]["stride"] = 2
json.dump(s, open(sys.argv[2], "w"))' "$OUT/cifar10.json" "$OUT/lab96.json"
if [ ! -s "$OUT/table.json" ]; then
  "$BIN/cli/nas" profile --space "$OUT/lab96.json" --table_out "$OUT/table.json" \
    --threads "$THREADS" --profile_repeats 6 --profile_passes 1 --calibration_networks 0 \
    --progress=false >"$OUT/profile.log" 2>&1
fi

# The schedule (defaults): 448 training images (7 batches) and 64 validation images drawn from
# TRAIN_SUBSET; no warm-up, 2 search epochs (the first search epoch has no arch steps), an arch
# step after every second weight step of the second: 14 weight steps and 3 arch steps. No final
# training, baseline or sampled paths (none of them is timed).
COMMON=(--space "$OUT/lab96.json" --dataset folder --data_dir "$FOLDER"
        --latency_table "$OUT/table.json" --train_subset "$TRAIN_SUBSET" --valid_size "$VALID_SIZE"
        --test_subset 64 --warmup_epochs 0 --search_epochs 2 --arch_every "$ARCH_EVERY"
        --arch_lr "$ARCH_LR" --train_epochs 0 --baseline=false --sampled_paths -1
        --progress=false --seed "$SEED" --batch_size "$BATCH"
        --threads "$THREADS" --loader_threads "$LOADER_THREADS" --profile_repeats 6)

busy() {  # busy jiffies of all CPUs (user nice system irq softirq steal)
  awk '/^cpu /{print $2 + $3 + $4 + $7 + $8 + $9}' /proc/stat
}
HZ=$(getconf CLK_TCK)
RUNS="$OUT/runs.tsv"
: >"$RUNS"
N=0
run() {  # run A|B|a|b PAIR
  local mode=$1 pair=$2 dir load0 load1 b0 b1 t0 t1 cpu
  N=$((N + 1))
  dir="$OUT/run$N-$mode"
  rm -rf "$dir"
  local flags=() envs=()
  [ "$mode" = B ] || [ "$mode" = b ] && flags=(--stream_images)
  [ "$mode" = a ] || [ "$mode" = b ] && envs=(GLIBC_TUNABLES=glibc.malloc.tcache_count=7)
  load0=$(cut -d' ' -f1 /proc/loadavg)
  b0=$(busy)
  t0=$(date +%s.%N)
  TIMEFORMAT='%U %S'
  cpu=$( { time env "${envs[@]}" "$BIN/cli/nas" search --out "$dir" "${COMMON[@]}" "${flags[@]}" \
             >"$dir.log" 2>&1; } 2>&1 ) || { cat "$dir.log"; exit 1; }
  t1=$(date +%s.%N)
  b1=$(busy)
  load1=$(cut -d' ' -f1 /proc/loadavg)
  "$PY" - "$dir" "$mode" "$pair" "$BATCH" "$load0" "$load1" "$b0" "$b1" "$t0" "$t1" "$HZ" \
    "$cpu" >>"$RUNS" <<'PY'
import json, sys
d, mode, pair, batch, l0, l1, b0, b1, t0, t1, hz, cpu = sys.argv[1:]
r = json.load(open(f"{d}/report.json"))
steps = r["weight_steps"] + r["arch_steps"]
s = r["seconds"]["search"]
wall = float(t1) - float(t0)
mine = sum(float(x) for x in cpu.split())
others = max(0.0, ((int(b1) - int(b0)) / int(hz) - mine) / wall)
assert r["data"]["streamed"] == (mode in "Bb"), r["data"]
print("\t".join(str(x) for x in [pair, mode, r["weight_steps"], r["arch_steps"], f"{s:.1f}",
                                 f"{steps * int(batch) / s:.2f}", l0, l1, f"{others:.2f}",
                                 r["data"]["train"], r["data"]["valid"], f"{mine:.0f}",
                                 f"{wall:.0f}"]))
PY
  tail -1 "$RUNS" | awk -F'\t' '{
    m = ($2 == "A" || $2 == "a") ? "in memory" : "streamed"
    if ($2 == "a" || $2 == "b") m = m " (glibc defaults)"
    printf "| %s | %s | %s/%s | %s+%s | %s | %s | %s / %s | %s | %s / %s |\n", $1,
      m, $10, $11, $3, $4, $5, $6, $7, $8, $9, $12, $13}'
}

echo "threads $THREADS, loader threads $LOADER_THREADS, arch_lr $ARCH_LR, folder $FOLDER," \
  "$(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'),"\
  "$(date -u +%FT%TZ)"
echo
echo "| pair | mode | train/valid images | weight+arch steps | search s | images/s |" \
  "load avg before / after | others' cores | run's CPU s / wall s |"
echo "|---|---|---|---|---:|---:|---|---:|---|"
for p in $(seq 1 "$PAIRS"); do
  if [ $((p % 2)) -eq 1 ]; then
    for v in "${VARIANT_LIST[@]}"; do run "$v" "$p"; done
  else
    for ((i = ${#VARIANT_LIST[@]} - 1; i >= 0; i--)); do run "${VARIANT_LIST[$i]}" "$p"; done
  fi
done
echo
"$PY" - "$RUNS" <<'PY'
import statistics, sys
rows = [l.rstrip("\n").split("\t") for l in open(sys.argv[1]) if l.strip()]
pairs = {}
for r in rows:
    pairs.setdefault(r[0], {})[r[1]] = r
NAMES = {"A": "in memory", "B": "streamed", "a": "in memory, glibc defaults",
         "b": "streamed, glibc defaults"}
for x, y in [("A", "B"), ("a", "b"), ("a", "A"), ("b", "B")]:
    both = [(p, m[x], m[y]) for p, m in pairs.items() if x in m and y in m]
    if not both:
        continue
    ratios = []
    print(f"| pair | {NAMES[x]} images/s | {NAMES[y]} images/s | ratio {y}/{x} |")
    print("|---|---:|---:|---:|")
    for p, a, b in both:
        if (a[2], a[3]) != (b[2], b[3]):
            sys.exit(f"pair {p}: {x} and {y} ran different steps: {a[2]}+{a[3]} vs {b[2]}+{b[3]}")
        ratio = float(b[5]) / float(a[5])
        ratios.append(ratio)
        print(f"| {p} | {a[5]} | {b[5]} | {ratio:.3f} |")
    print()
    print(f"median {y}/{x} {statistics.median(ratios):.3f} over {len(ratios)} pairs "
          f"(range {min(ratios):.3f}-{max(ratios):.3f}); same weight and arch steps in every pair")
    print()
PY
