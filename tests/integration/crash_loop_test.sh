#!/usr/bin/env bash
# Crash loop (issue 19): a real search (coordinator, latency service and a LibTorch worker as
# processes on loopback) survives the coordinator being killed with SIGKILL 20 times at random
# moments, the latency service killed (before the job has its latencies, and during the
# search) and the worker killed twice. The job must finish with an alpha history byte-equal to
# an uninterrupted run of the same spec and seed, and no acknowledged round may be lost: after
# every restart the job is at or past the last round the coordinator reported written.
# Usage: crash_loop_test.sh BUILD_DIR [KILLS]   (KILLS: coordinator kills, default 20)
set -uo pipefail
BIN=${1:?usage: crash_loop_test.sh BUILD_DIR [KILLS]}
KILLS=${2:-20}
NAS=$BIN/cli/nas
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
WORKER=$BIN/worker/nas_worker
LSERVER=$BIN/latency_service/latency_server
LCTL=$BIN/latency_service/latency_ctl
source "$(dirname "$0")/lib.sh"
RANDOM=${NAS_CRASH_LOOP_SEED:-$$}  # the kill moments; printed so that a failure can be replayed
echo "crash loop: $KILLS coordinator kills, seed $RANDOM"

"$NAS" profile --space fashion-mnist --device local-cpu --threads 1 --profile_repeats 3 \
  --table_out "$WORK/table.json" >"$WORK/profile.log" 2>&1 || { cat "$WORK/profile.log"; exit 1; }
# One task per round: many small rounds to kill between (9 epochs of 20 batches; a kill every
# ~5 rounds on the development machine).
cat >"$WORK/spec.json" <<'EOF'
{"space": "fashion-mnist", "device": "local-cpu", "trainSubset": "1200", "validSize": "200",
 "testSubset": "300", "warmupEpochs": 1, "searchEpochs": 8, "trainEpochs": 1, "batchSize": 50,
 "archEvery": 2, "seed": "11", "parallelTasks": 1, "chainSteps": 1}
EOF

LP=$(free_port)
latency_listening() { [ "$(grep -c listening "$WORK/latency.log")" = "$LAT_STARTS" ]; }
start_latency() {  # start_latency N: the Nth start of the service on $LP
  "$LSERVER" --address=127.0.0.1 --port="$LP" --metrics_port=-1 --table_dir="$WORK/lt" \
    >>"$WORK/latency.log" 2>&1 &
  LAT_PID=$!
  PIDS+=("$LAT_PID")
  LAT_STARTS=$1
  wait_for 30 latency_listening
}
start_latency 1
"$LCTL" --server="127.0.0.1:$LP" put "$WORK/table.json" >/dev/null

run_job() {  # run_job NAME: coordinator + worker on a fresh store; sets CP, DB, JOB, WORKER_PID
  CP=$(free_port)
  DB="$WORK/db-$1"
  start_coordinator --latency_service="127.0.0.1:$LP"
  start_worker "w-$1"
  JOB=$("$NASCTL" --coordinator="127.0.0.1:$CP" submit --spec="$WORK/spec.json")
}

# --- the uninterrupted run ------------------------------------------------------------------
run_job ref
check "uninterrupted job finishes" wait_for 600 state_is DONE
"$NASCTL" --coordinator="127.0.0.1:$CP" result "$JOB" --out="$WORK/ref" >/dev/null 2>&1
REF_STEPS=$(status | sed -n 's/.* steps \([0-9]*\/[0-9]*\) .*/\1/p')
kill "$WORKER_PID" "$COORD_PID" 2>/dev/null

# --- the crash loop ---------------------------------------------------------------------------
# The latency service is down when the job is submitted: the job waits (degraded) for it.
kill -9 "$LAT_PID"
run_job loop
check "with the latency service down the job waits as degraded" \
  wait_for 30 state_is "PREPARING.*DEGRADED"
start_latency 2
check "the job starts once the latency service is back" wait_for 120 state_is RUNNING
status_changed() { [ "$(status)" != "$S0" ]; }
steps_of() { status | sed -n 's/.* steps \([0-9]*\/[0-9]*\) .*/\1/p'; }
kills=0
lost=0
latency_kills=1
worker_kills=0
restarts=()
for i in $(seq 1 "$KILLS"); do
  # A random moment after the job has moved on since the last restart.
  S0=$(status)
  wait_for 120 status_changed
  state_is "RUNNING" || break  # the search is over (FINAL or later): no more kills
  sleep "0.$((RANDOM % 8))$((RANDOM % 10))"
  W=$(written_of)
  crash_coordinator --latency_service="127.0.0.1:$LP"
  kills=$((kills + 1))
  R=$(round_of)
  restarts+=("${W:-?}->${R:-?}")
  if [ -z "$R" ] || [ -z "$W" ] || [ "$R" -lt "$W" ]; then lost=$((lost + 1)); fi
  if [ $((i % 7)) -eq 0 ]; then  # the latency service too, now and then
    kill -9 "$LAT_PID"
    latency_kills=$((latency_kills + 1))
    start_latency $((latency_kills + 1))
  fi
  if [ $((i % 9)) -eq 0 ]; then  # and the worker (its lease expires; a new one takes over)
    kill -9 "$WORKER_PID"
    worker_kills=$((worker_kills + 1))
    start_worker "w-loop-$i"
  fi
done
echo "  kills (written before -> round after restart): ${restarts[*]}"
echo "  latency service killed $latency_kills times, worker $worker_kills times"
check "the coordinator was killed $KILLS times during the search (got $kills)" test "$kills" -eq "$KILLS"
check "no acknowledged round was lost across the restarts" test "$lost" -eq 0
check "the job finishes after the crash loop" wait_for 600 state_is DONE
"$NASCTL" --coordinator="127.0.0.1:$CP" result "$JOB" --out="$WORK/loop" >/dev/null 2>&1
check "alpha history byte-equal to the uninterrupted run's" \
  cmp "$WORK/ref/alpha_history.jsonl" "$WORK/loop/alpha_history.jsonl"
check "same derived architecture" cmp "$WORK/ref/architecture.json" "$WORK/loop/architecture.json"
check "the same weight steps as the uninterrupted run, none applied twice ($REF_STEPS)" \
  test -n "$REF_STEPS" -a "$(steps_of)" = "$REF_STEPS"

echo "crash_loop_test: $pass passed, $fail failed"
if [ $fail -ne 0 ]; then
  for f in "$WORK"/coordinator-*.log; do echo "--- $f"; tail -n 8 "$f"; done
  for f in "$WORK"/w-*.log; do echo "--- $f"; tail -n 8 "$f"; done
fi
[ $fail -eq 0 ]
