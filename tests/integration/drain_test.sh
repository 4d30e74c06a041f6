#!/usr/bin/env bash
# SIGTERM drains a worker (issue 23): a real nas_worker stopped in the middle of a final task
# hands its lease back, and the coordinator re-issues the task to the next worker at once. The
# lease lasts 10 minutes (--lease_ms=600000) and no lease may expire during the test, so the
# re-issue cannot have been the deadline's. Worker a also serves Prometheus metrics
# (--metrics_port=0): once it reaches the final task, its /metrics shows the search's and the
# sampled paths' tasks by kind, their step times, tensor bytes both ways, cache hits and memory.
# Usage: drain_test.sh BUILD_DIR
set -uo pipefail
BIN=${1:?usage: drain_test.sh BUILD_DIR}
NAS=$BIN/cli/nas
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
WORKER=$BIN/worker/nas_worker
source "$(dirname "$0")/lib.sh"

# A latency table of this machine (a short profile: the job needs complete keys, not precision).
"$NAS" profile --space fashion-mnist --device local-cpu --threads 1 --profile_repeats 3 \
  --table_out "$WORK/table.json" >"$WORK/profile.log" 2>&1 || { cat "$WORK/profile.log"; exit 1; }
# A short search and a long final training, so that the worker is stopped inside it.
cat >"$WORK/spec.json" <<'JSON'
{"space": "fashion-mnist", "device": "local-cpu", "trainSubset": "600", "validSize": "100",
 "testSubset": "100", "warmupEpochs": 1, "searchEpochs": 1, "trainEpochs": 200, "batchSize": 50,
 "archEvery": 2, "seed": "7"}
JSON

CP=$(free_port)
DB="$WORK/db"
start_coordinator --lease_ms=600000 --latency_table="$WORK/table.json"
start_worker a --metrics_port=0
A_PID=$WORKER_PID
JOB=$("$NASCTL" --coordinator="127.0.0.1:$CP" submit --spec="$WORK/spec.json")
check "job submitted" test -n "$JOB"
check "worker a reaches a final task" wait_for 600 grep -q "final [a-z]*: epoch" "$WORK/a.log"
LABEL=$(sed -n 's/.*final \([a-z]*\): epoch.*/\1/p' "$WORK/a.log" | head -n 1)

MP=$(sed -n 's/.*metrics on port \([0-9]*\).*/\1/p' "$WORK/a.log" | head -n 1)
check "worker a serves metrics (port ${MP:-none})" test -n "$MP"
curl -sf "http://127.0.0.1:$MP/metrics" >"$WORK/a.metrics"
check "its /metrics answers" test -s "$WORK/a.metrics"
metric() {  # metric REGEX: the first sample matching REGEX (a line of the text format), its value
  grep -E "^$1 " "$WORK/a.metrics" | head -n 1 | awk '{print $2}'
}
positive() { awk -v v="$1" 'BEGIN { exit !(v + 0 > 0) }'; }
for kind in init weight eval; do
  check "tasks_total{kind=$kind,outcome=ok} > 0" \
    positive "$(metric "nas_worker_tasks_total\\{kind=\"$kind\",outcome=\"ok\"\\}")"
done
check "step_seconds has weight-step observations" \
  positive "$(metric 'nas_worker_step_seconds_count\{kind="weight"\}')"
check "tensor bytes fetched > 0" positive "$(metric 'nas_worker_tensor_bytes_total\{direction="fetched"\}')"
check "tensor bytes uploaded > 0" positive "$(metric 'nas_worker_tensor_bytes_total\{direction="uploaded"\}')"
check "cache hits > 0" positive "$(metric 'nas_worker_tensors_total\{source="cache"\}')"
check "host memory > 0" positive "$(metric 'nas_worker_memory_bytes\{kind="host_resident"\}')"
check "not draining yet" test "$(metric 'nas_worker_draining')" = 0

kill -TERM "$A_PID"
a_exited() { ! kill -0 "$A_PID" 2>/dev/null; }
check "worker a exits after SIGTERM" wait_for 60 a_exited
wait "$A_PID"
code=$?
check "with status 0 (got $code)" test "$code" -eq 0
check "worker a handed its lease back" grep -q "handed lease .* back: the coordinator re-issues" \
  "$WORK/a.log"
check "the coordinator re-queued it at once" \
  grep -q "(final task, of job $JOB) handed back by worker" "$COORD_LOG"

start_worker b
check "worker b gets the handed-back final task ($LABEL)" \
  wait_for 120 grep -q "final $LABEL: epoch" "$WORK/b.log"
check "no lease expired (the 10-minute deadline played no part)" \
  bash -c "! grep -q 'expired; re-issuing' '$COORD_LOG'"

echo "drain_test: $pass passed, $fail failed"
if [ $fail -ne 0 ]; then
  for f in "$COORD_LOG" "$WORK"/a.log "$WORK"/b.log; do echo "--- $f"; tail -n 15 "$f"; done
  echo "--- worker a's task metrics"
  grep "^nas_worker_tasks_total" "$WORK/a.metrics"
fi
[ $fail -eq 0 ]
