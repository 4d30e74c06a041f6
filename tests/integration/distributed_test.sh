#!/usr/bin/env bash
# The distributed search as real processes on loopback (issue 4's "must hold" list):
#  - equivalence: `nas search --workers 1` follows the single-process search's alpha trajectory
#    and derives the same architecture (same seed, same threads);
#  - memory: a worker holds only its task's path (two candidates per edge for an arch task),
#    never the supernet - from the bytes it reports fetching and holding per task;
#  - coordinator crash: kill -9 mid-search, restart on the same RocksDB directory; the job
#    finishes with exactly the single-process trajectory (no round lost or applied twice): with
#    synced commits (every result waits for its round's write) and with --pipelined_commits
#    (the restart is at or after the last round the status reported written, and re-runs at
#    most two rounds, identically);
#  - worker crash: a frozen worker's lease expires, the task is re-issued to another worker,
#    the frozen worker's late result is refused; kill -9 of a worker; the job finishes, same
#    trajectory (the two workers speak the one-round-trip and the three-call protocol);
#  - both crashes with chains of weight tasks: the coordinator killed while chains run, a
#    worker frozen holding a chain (re-issued whole, its late result fenced off); same trajectory;
#  - latency service down: the job waits, reported as degraded, nothing crashes; once the
#    service is up the job runs.
# Usage: distributed_test.sh BIN_DIR   (the build directory)
set -uo pipefail
BIN=${1:?usage: distributed_test.sh BUILD_DIR}
NAS=$BIN/cli/nas
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
WORKER=$BIN/worker/nas_worker
LSERVER=$BIN/latency_service/latency_server
LCTL=$BIN/latency_service/latency_ctl
source "$(dirname "$0")/lib.sh"
one_worker_job() {  # one_worker_job DB_NAME WORKER SPEC COORDINATOR_FLAGS...: a coordinator on
  # a free port with its RocksDB in $WORK/DB_NAME, one worker, SPEC ($WORK/SPEC) submitted;
  # sets CP, DB, JOB and WORKER_PID
  local db=$1 worker=$2 spec=$3
  shift 3
  CP=$(free_port)
  DB="$WORK/$db"
  start_coordinator "$@"
  start_worker "$worker"
  JOB=$("$NASCTL" --coordinator="127.0.0.1:$CP" submit --spec="$WORK/$spec")
}
same_trajectory() {  # same_trajectory A_DIR B_DIR: alpha histories and architectures equal
  python3 - "$1" "$2" <<'EOF'
import json, sys
a, b = sys.argv[1], sys.argv[2]
ha = [json.loads(l) for l in open(a + "/alpha_history.jsonl")]
hb = [json.loads(l) for l in open(b + "/alpha_history.jsonl")]
if len(ha) != len(hb):
    sys.exit(f"{len(ha)} vs {len(hb)} history lines")
worst = 0.0
for x, y in zip(ha, hb):
    for ra, rb in zip(x["alpha"], y["alpha"]):
        for u, v in zip(ra, rb):
            worst = max(worst, abs(u - v))
arch_a = json.load(open(a + "/architecture.json"))["choices"]
arch_b = json.load(open(b + "/architecture.json"))["choices"]
print(f"  {len(ha)} history lines, largest alpha difference {worst:.3g}, architectures {arch_a} / {arch_b}")
sys.exit(0 if worst <= 1e-6 and arch_a == arch_b else 1)
EOF
}

# A latency table of this machine for the Fashion-MNIST space (short profile: the test needs
# a complete table, not precise numbers).
"$NAS" profile --space fashion-mnist --device local-cpu --threads 1 --profile_repeats 3 \
  --table_out "$WORK/table.json" >"$WORK/profile.log" 2>&1 || { cat "$WORK/profile.log"; exit 1; }

TINY=(--train_subset 1200 --valid_size 200 --test_subset 300 --warmup_epochs 1 --search_epochs 2
      --train_epochs 1 --batch_size 50 --arch_every 2 --threads 1 --progress=false --seed 7
      --latency_table "$WORK/table.json")
cat >"$WORK/spec.json" <<'EOF'
{"space": "fashion-mnist", "device": "local-cpu", "trainSubset": "1200", "validSize": "200",
 "testSubset": "300", "warmupEpochs": 1, "searchEpochs": 2, "trainEpochs": 1, "batchSize": 50,
 "archEvery": 2, "seed": "7", "parallelTasks": 1, "chainSteps": 1}
EOF

# The crash tests below run one task per round (chainSteps 1: many small rounds to kill
# between), except "crashes mid-chain"; `nas search --workers 1` runs the default chains of 8.
sed 's/"chainSteps": 1/"chainSteps": 8/' "$WORK/spec.json" >"$WORK/spec-chains.json"

# --- equivalence -------------------------------------------------------------------------
"$NAS" search --out "$WORK/single" "${TINY[@]}" >"$WORK/single.log" 2>&1
check "single-process search finishes" test -f "$WORK/single/report.json"
"$NAS" search --workers 1 --out "$WORK/dist" "${TINY[@]}" >"$WORK/dist.log" 2>&1
check "distributed search (1 worker) finishes" test -f "$WORK/dist/report.json"
check "distributed result directory is complete" test -s "$WORK/dist/derived.pt" -a \
  -s "$WORK/dist/baseline.pt" -a -s "$WORK/dist/network.json" -a -s "$WORK/dist/job_spec.json"
check "one worker (chains of 8 weight tasks) follows the single-process trajectory" \
  same_trajectory "$WORK/single" "$WORK/dist"
check "a chain materialises one path at a time and holds only its paths' tensors" \
  python3 - "$WORK/dist/logs/worker-0.tasks.jsonl" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
init = [l for l in lines if l["kind"] == "init" and l["outcome"] == "ok"]
weight = [l for l in lines if l["kind"] == "weight" and l["outcome"] == "ok"]
assert init and weight, "no tasks recorded"
supernet = init[0]["resident_bytes"]
# TINY: 20 batches an epoch; chains of 8 in the warm-up and first joint epochs (8, 8, 4), then 2
# (an arch step after every 2nd batch): 3 + 3 + 10 weight tasks.
print(f"  {len(weight)} weight tasks; largest step {max(l['resident_bytes'] for l in weight)} B, "
      f"largest chain result {max(l['held_bytes'] for l in weight)} B (supernet {supernet} B, "
      f"with momentum up to twice that)")
assert len(weight) == 16, len(weight)
assert max(l["resident_bytes"] for l in weight) < 0.6 * supernet, "a step held more than one path"
assert all(l["held_bytes"] >= l["resident_bytes"] for l in weight)
assert max(l["held_bytes"] for l in weight) <= 2 * supernet
EOF
[ -f "$WORK/dist/report.json" ] || { cat "$WORK/dist.log" "$WORK"/dist/logs/*.log; }
check "one worker's cache: each tensor fetched about once, not the path every task" \
  python3 - "$WORK/dist/logs/worker-0.tasks.jsonl" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
init = [l for l in lines if l["kind"] == "init" and l["outcome"] == "ok"]
steps = [l for l in lines if l["kind"] in ("weight", "arch") and l["outcome"] == "ok"]
assert init and steps, "no tasks recorded"
supernet = init[0]["resident_bytes"]
fetched = sum(l["fetched_bytes"] for l in steps)
held = sum(l["resident_bytes"] for l in steps)
print(f"  {len(steps)} tasks fetched {fetched} B in all (supernet {supernet} B; the tasks held "
      f"{held} B in all, what they would fetch without the cache); cache at the end "
      f"{steps[-1]['cached_bytes']} B")
# Only this worker changes tensors, so a cached one stays current: weights and BatchNorm
# statistics are fetched once, momentum once after the step that created it.
assert fetched <= 2.5 * supernet, "tensors were fetched again although nobody else changed them"
assert steps[-1]["cached_bytes"] <= 2.5 * supernet
EOF

# --- memory + coordinator crash ----------------------------------------------------------
one_worker_job db-crash wa spec.json --latency_table="$WORK/table.json"
check "job submitted" test -n "$JOB"
wait_for 120 round_at_least 25
R_KILL=$(round_of)
crash_coordinator --latency_table="$WORK/table.json"
R_RESTART=$(round_of)
echo "  killed the coordinator at round $R_KILL; restarted at committed round $R_RESTART"
check "restart resumes at the last committed round" test -n "$R_RESTART" -a "${R_RESTART:-0}" -ge 20
check "job finishes after the coordinator crash" wait_for 300 state_is DONE
"$NASCTL" --coordinator="127.0.0.1:$CP" result "$JOB" --out="$WORK/crash" >/dev/null 2>&1
check "crashed-and-resumed job has the single-process trajectory" same_trajectory "$WORK/single" "$WORK/crash"
check "worker memory: one path per weight task, two candidates per edge per arch task" \
  python3 - "$WORK/wa.jsonl" "$WORK/single/search_space.json" <<'EOF'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1])]
init = [l for l in lines if l["kind"] == "init" and l["outcome"] == "ok"]
weight = [l for l in lines if l["kind"] == "weight" and l["outcome"] == "ok"]
arch = [l for l in lines if l["kind"] == "arch" and l["outcome"] == "ok"]
assert init and weight and arch, "no tasks recorded"
supernet = init[0]["resident_bytes"]
worst_w = max(l["resident_bytes"] for l in weight)
worst_a = max(l["resident_bytes"] for l in arch)
print(f"  supernet {supernet} B; largest weight task {worst_w} B; largest arch task {worst_a} B; "
      f"{len(weight)} weight / {len(arch)} arch tasks")
# A path holds at most its parameters twice (weights + momentum) plus BN statistics; the
# supernet holds 6 candidates per edge. Fetched bytes never exceed what is held.
assert worst_w < 0.6 * supernet, "a weight task held more than one path"
assert worst_a < 0.6 * supernet, "an arch task held more than two candidates per edge"
assert all(l["fetched_bytes"] <= l["resident_bytes"] for l in weight + arch)
EOF

kill "$WORKER_PID" "$COORD_PID" 2>/dev/null

# --- coordinator crash with pipelined commits (a round is written while the next one runs, and
# acknowledged - `(written N)` in the status - once written) ----------------------------------
one_worker_job db-pipelined wp spec.json --latency_table="$WORK/table.json" --pipelined_commits
wait_for 120 round_at_least 25
W_KILL=$(written_of)
R_KILL=$(round_of)
crash_coordinator --latency_table="$WORK/table.json" --pipelined_commits
R_RESTART=$(round_of)
echo "  pipelined commits: killed the coordinator at round >= $R_KILL (written $W_KILL); restarted at committed round $R_RESTART"
check "pipelined commits: no round acknowledged as written is lost" \
  test -n "$R_RESTART" -a -n "$W_KILL" -a "${R_RESTART:-0}" -ge "${W_KILL:-999999}"
check "pipelined commits: the restart is at most two rounds behind" \
  test -n "$R_RESTART" -a "${R_RESTART:-0}" -ge $((${R_KILL:-25} - 2))
check "pipelined commits: job finishes after the coordinator crash" wait_for 300 state_is DONE
"$NASCTL" --coordinator="127.0.0.1:$CP" result "$JOB" --out="$WORK/pcrash" >/dev/null 2>&1
check "pipelined commits: the resumed job has the single-process trajectory" \
  same_trajectory "$WORK/single" "$WORK/pcrash"
kill "$WORKER_PID" "$COORD_PID" 2>/dev/null

# --- worker crash --------------------------------------------------------------------------
one_worker_job db-worker wb spec.json --latency_table="$WORK/table.json"
WB=$WORKER_PID
wait_for 120 round_at_least 10
# wc speaks the protocol without inline tensors (AcquireTask, FetchTensors, CompleteTask per
# task); wb takes tensors inline and its next task with each result: the job mixes both. wc's
# cache (1 MiB, under the supernet's ~3 MB) drops its least recently used tensors as it goes.
start_worker wc --inline_limit_bytes=0 --cache_mb=1
WC=$WORKER_PID
refused=0
for attempt in 1 2 3; do
  kill -STOP "$WB"  # wb stops mid-task: its heartbeats stop, its lease expires
  R0=$(round_of)
  wait_for 60 round_at_least $((R0 + 5))
  kill -CONT "$WB"
  sleep 2
  # Fenced either way: the coordinator refuses its result, or refuses its fetch / tells it by
  # heartbeat that the lease is gone, and the worker drops the task.
  if grep -q "expired; re-issuing" "$COORD_LOG" &&
     { grep -q "refused the result of lease" "$COORD_LOG" ||
       grep -q "abandoning the task of lease" "$WORK/wb.log"; }; then
    refused=1
    break
  fi
done
check "a frozen worker's lease expired, its task was re-issued, its late work was fenced off" \
  test "$refused" = 1
wait_for 60 round_at_least $(($(round_of) + 3))
kill -9 "$WB"
check "job finishes after kill -9 of a worker" wait_for 300 state_is DONE
"$NASCTL" --coordinator="127.0.0.1:$CP" result "$JOB" --out="$WORK/wcrash" >/dev/null 2>&1
check "job with a crashed worker has the single-process trajectory" same_trajectory "$WORK/single" "$WORK/wcrash"
check "a worker's cache stays within --cache_mb (or the running task's tensors)" \
  python3 - "$WORK/wc.jsonl" <<'EOF'
import json, sys
steps = [json.loads(l) for l in open(sys.argv[1])]
steps = [l for l in steps if l["kind"] in ("weight", "arch") and l["outcome"] == "ok"]
assert steps, "wc ran no task"
over = [l for l in steps if l["cached_bytes"] > max(1 << 20, l["resident_bytes"])]
print(f"  wc: {len(steps)} tasks, cache {min(l['cached_bytes'] for l in steps)}.."
      f"{max(l['cached_bytes'] for l in steps)} B")
assert not over, over[0]
EOF
kill "$WC" "$COORD_PID" 2>/dev/null

# --- crashes mid-chain ----------------------------------------------------------------------
# Chains of 8 weight tasks: kill -9 of the coordinator while its worker runs chains, restart on
# the same RocksDB; then a worker frozen while it holds a chain's lease: the whole chain is
# re-issued to another worker and the frozen one's late result fenced off. The job still
# follows the single-process trajectory.
one_worker_job db-chains wf spec-chains.json --latency_table="$WORK/table.json"
WF=$WORKER_PID
wait_for 120 round_at_least 2
W_KILL=$(written_of)
crash_coordinator --latency_table="$WORK/table.json"
R_RESTART=$(round_of)
echo "  chains: killed the coordinator (written $W_KILL); restarted at committed round $R_RESTART"
check "chains: the restart keeps every round acknowledged as written" \
  test -n "$R_RESTART" -a -n "$W_KILL" -a "${R_RESTART:-0}" -ge "${W_KILL:-999999}"
# Freeze wf at a moment its log's last line is the start of a chain (it holds that lease) and
# the coordinator then expires that very lease; otherwise let it go on and try again. First
# wf finds the restarted coordinator (it may be backing off after the crash).
wait_for 60 grep -q "registered again" "$WORK/wf.log"
CHAIN_LEASE=""
for attempt in $(seq 1 300); do
  kill -STOP "$WF"
  last=$(tail -n 1 "$WORK/wf.log")
  if [[ "$last" == *"weight task: "*", a chain of "* ]]; then
    L=$(sed -n 's/.*, lease \([^,]*\), .*/\1/p' <<<"$last")
    if wait_for 10 grep -qF "lease $L (weight task, a chain of" "$COORD_LOG"; then
      CHAIN_LEASE=$L
      break
    fi
  fi
  kill -CONT "$WF"
  sleep 0.05
done
echo "  chains: froze wf holding the chain of lease ${CHAIN_LEASE:-(none)} (attempt $attempt)"
check "chains: a frozen worker's chain lease expired and was re-issued" test -n "$CHAIN_LEASE"
start_worker wg
check "chains: the re-issued chain runs on the other worker" \
  wait_for 60 grep -q "weight task: .*, a chain of" "$WORK/wg.log"
kill -CONT "$WF"
check "chains: the frozen worker's late chain was fenced off" wait_for 30 sh -c \
  "grep -qF 'refused the result of lease $CHAIN_LEASE' '$COORD_LOG' || grep -qF 'abandoning the task of lease $CHAIN_LEASE' '$WORK/wf.log'"
kill -9 "$WF"
check "chains: job finishes after both crashes" wait_for 300 state_is DONE
"$NASCTL" --coordinator="127.0.0.1:$CP" result "$JOB" --out="$WORK/ccrash" >/dev/null 2>&1
check "chains: the job with both crashes has the single-process trajectory" \
  same_trajectory "$WORK/single" "$WORK/ccrash"
kill "$WORKER_PID" "$COORD_PID" 2>/dev/null

# --- latency service down ------------------------------------------------------------------
LP=$(free_port)
one_worker_job db-latency wd spec.json --latency_service="127.0.0.1:$LP"
check "job waits as degraded while the latency service is down" wait_for 30 state_is "PREPARING.*DEGRADED"
check "the degraded state says why" sh -c "\"$NASCTL\" --coordinator=127.0.0.1:$CP status $JOB | grep -q 'latency service unavailable'"
check "the coordinator is still up" kill -0 "$COORD_PID"
"$LSERVER" --address=127.0.0.1 --port="$LP" --metrics_port=-1 --table_dir="$WORK/lt" \
  >"$WORK/latency.log" 2>&1 &
PIDS+=("$!")
wait_for 30 grep -q "listening" "$WORK/latency.log"
"$LCTL" --server="127.0.0.1:$LP" put "$WORK/table.json" >/dev/null
check "the job runs once the latency service is back" wait_for 120 state_is "RUNNING\|FINAL\|DONE"

# --- metrics: a real Prometheus scrapes the coordinator of a finished job -----------------
if command -v prometheus >/dev/null && command -v curl >/dev/null; then
  MP=$(free_port)
  PP=$(free_port)
  # Chains of 8 weight tasks (the default with one task per round): 16 rounds of 60 SGD steps.
  one_worker_job db-metrics we spec-chains.json --latency_table="$WORK/table.json" \
    --metrics_port="$MP"
  wait_for 300 state_is DONE
  cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: coordinator
    honor_labels: true
    static_configs:
      - targets: ["127.0.0.1:$MP"]
YAML
  prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$PP" >"$WORK/prometheus.log" 2>&1 &
  PIDS+=("$!")
  query() {
    curl -s --get "http://127.0.0.1:$PP/api/v1/query" --data-urlencode "query=$1" |
      python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
  }
  scraped() { [ "$(query 'up{instance="127.0.0.1:'"$MP"'"}')" = "1" ] && [ -n "$(query 'nas_jobs')" ]; }
  wait_for 60 scraped
  expect_metric() {  # expect_metric PROMQL VALUE
    local got
    got=$(query "$1")
    check "prometheus: $1 = $2 (got '$got')" test "$got" = "$2"
  }
  expect_metric 'nas_jobs{state="DONE"}' 1
  expect_metric "nas_rounds_total{job=\"$JOB\"}" 16
  expect_metric "nas_weight_steps_total{job=\"$JOB\"}" 60
  expect_metric 'nas_tasks_total{kind="weight",outcome="ok"}' 16
  expect_metric 'nas_tasks_total{kind="arch",outcome="ok"}' 10
  expect_metric 'nas_tasks_total{kind="final",outcome="ok"}' 2
  expect_metric 'nas_checkpoint_seconds_count' 16
  expect_metric 'nas_workers{state="live"}' 1
  positive() { python3 -c 'import sys; sys.exit(0 if float(sys.argv[1] or 0) > 0 else 1)' "$(query "$1")"; }
  check "prometheus: nas_expected_latency_ms of the job > 0" positive "nas_expected_latency_ms{job=\"$JOB\"}"
  check "prometheus: nas_tensor_bytes_total fetched > 0" positive 'nas_tensor_bytes_total{direction="fetched"}'
  check "prometheus: nas_tensor_bytes_total returned > 0" positive 'nas_tensor_bytes_total{direction="returned"}'
  check "prometheus: nas_checkpoint_memtable_bytes > 0" positive 'nas_checkpoint_memtable_bytes'
  check "prometheus: nas_checkpoint_wal_bytes > 0" positive 'nas_checkpoint_wal_bytes'
else
  echo "skip metrics: prometheus or curl is not installed"
fi

echo "distributed_test: $pass passed, $fail failed"
if [ $fail -ne 0 ]; then
  for f in "$WORK"/coordinator-*.log; do echo "--- $f"; tail -n 20 "$f"; done
  for f in "$WORK"/w*.log; do echo "--- $f"; tail -n 15 "$f"; done
fi
[ $fail -eq 0 ]
