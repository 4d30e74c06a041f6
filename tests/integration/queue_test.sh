#!/usr/bin/env bash
# The queue as real processes (issue 20): a coordinator with a tokens file and a quotas file,
# simulated workers in their own process, jobs of two tenants. Tenant vision may run one job at
# a time: its low-priority job is preempted by a high-priority one at a round boundary and waits
# QUEUED with a third job behind it, while speech's jobs run. Then kill -9 of the coordinator:
# after the restart the queue (who waits, in which place, preempted how often) and the usage are
# as before, and every job finishes. The preempted job's alpha history is byte-equal to an
# uninterrupted run of the same spec and seed. Tenant isolation is checked on the way.
# Usage: queue_test.sh BUILD_DIR
set -uo pipefail
BIN=${1:?usage: queue_test.sh BUILD_DIR}
NAS=$BIN/cli/nas
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
SIM=$BIN/coordinator/sim_workers
source "$(dirname "$0")/lib.sh"

# A latency table of the fashion-mnist space on this machine (the jobs' device).
profile_table

two_tenant_tokens
cat >"$WORK/quotas.json" <<'EOF'
{"half_life_hours": 24, "tenants": {"vision": {"weight": 3, "max_running_jobs": 1},
                                    "speech": {"weight": 1}}}
EOF
# One task a round: many round boundaries. ~200 rounds of 100 ms tasks.
cat >"$WORK/spec.json" <<'EOF'
{"space": "fashion-mnist", "device": "local-cpu", "warmupEpochs": 1, "searchEpochs": 40,
 "trainEpochs": -1, "batchSize": 50, "archEvery": 2, "seed": "5", "parallelTasks": 1,
 "chainSteps": 1}
EOF

CP=$(free_port)
WP=$(free_port)
DB="$WORK/db"
COORD_FLAGS=(--tokens_file="$WORK/tokens" --quotas_file="$WORK/quotas.json" --worker_port="$WP"
             --latency_table="$WORK/table.json")
start_coordinator "${COORD_FLAGS[@]}" || { cat "$COORD_LOG"; exit 1; }
"$SIM" --coordinator="127.0.0.1:$WP" --workers=3 --compute_ms=100 \
  --token_file="$WORK/worker-token" >"$WORK/sim.log" 2>&1 &
PIDS+=("$!")

as() {  # as TOKEN NASCTL_ARGS...
  local token=$1
  shift
  NAS_TOKEN=$token "$NASCTL" --coordinator="127.0.0.1:$CP" "$@"
}
line() { as tok-root-0123456789a status "$1" 2>/dev/null; }
state() { line "$1" | awk '{print $2}'; }
is_state() { [ "$(state "$1")" = "$2" ]; }
round() { line "$1" | sed -n 's/.* round \([0-9]*\) .*/\1/p'; }
past_round() { local r; r=$(round "$1"); [ -n "$r" ] && [ "$r" -ge "$2" ]; }
usage_of() {  # usage_of TENANT: decayed worker-seconds from `nasctl queue`
  as tok-root-0123456789a queue --tenant="$1" |
    sed -n "s/^tenant $1: .* usage \([0-9.]*\) worker-s.*/\1/p"
}

V1=$(as tok-alice-0123456789 submit --spec="$WORK/spec.json")
check "vision's first job runs" wait_for 60 past_round "$V1" 3
V2=$(as tok-alice-0123456789 submit --spec="$WORK/spec.json" --priority=5)
check "a higher-priority job preempts it at a round boundary" \
  wait_for 30 is_state "$V1" QUEUED
says_why() { line "$V1" | grep -q 'preempted 1x.*tenant vision runs at most 1 job'; }
check "the preempted job says why and how often" says_why
V3=$(as tok-alice-0123456789 submit --spec="$WORK/spec.json")
S1=$(as tok-bob-0123456789ab submit --spec="$WORK/spec.json")
S2=$(as tok-bob-0123456789ab submit --spec="$WORK/spec.json")
check "the third vision job waits behind the quota" wait_for 10 is_state "$V3" QUEUED
both_run() { is_state "$S1" RUNNING && is_state "$S2" RUNNING; }
check "speech's jobs are not held back by vision's quota" wait_for 30 both_run

# Isolation on the way: bob cannot see, cancel or delete alice's job; no token: refused.
not_found() {
  local out
  out=$(as tok-bob-0123456789ab status "$V1" 2>&1)
  ! echo "$out" | grep -q QUEUED && echo "$out" | grep -qi 'not.found\|no job'
}
check "another tenant's job is NOT_FOUND" not_found
cannot_cancel() { ! as tok-bob-0123456789ab cancel "$V1" 2>/dev/null && is_state "$V1" QUEUED; }
check "another tenant cannot cancel it" cannot_cancel
no_token() { ! NAS_TOKEN= "$NASCTL" --coordinator="127.0.0.1:$CP" list 2>/dev/null; }
check "no token: refused" no_token
own_queue() {
  local out
  out=$(as tok-bob-0123456789ab queue)
  echo "$out" | grep -q 'tenant speech' && ! echo "$out" | grep -q 'tenant vision'
}
check "bob's queue shows his tenant only" own_queue

# --- kill -9 with jobs queued, running and preempted -----------------------------------------
snapshot() {  # job: state position preemptions, for the waiting ones
  for j in "$V1" "$V3"; do
    line "$j" | sed -n 's/^\([^ ]*\) *\(QUEUED\) .*queue #\([0-9]*\).*/\1 \2 \3/p'
    line "$j" | grep -o 'preempted [0-9]*x' || echo "$j never preempted"
  done
}
BEFORE=$(snapshot)
USAGE_BEFORE=$(usage_of vision)
echo "before the kill: $BEFORE / vision usage $USAGE_BEFORE worker-s"
sleep 1.5  # the usage is written once a second
crash_coordinator "${COORD_FLAGS[@]}" || { cat "$COORD_LOG"; exit 1; }
AFTER=$(snapshot)
USAGE_AFTER=$(usage_of vision)
echo "after the restart: $AFTER / vision usage $USAGE_AFTER worker-s"
check "the queue is as before the kill" [ "$BEFORE" = "$AFTER" ]
check "the usage is as before the kill" \
  python3 -c "import sys; b, a = float('$USAGE_BEFORE'), float('$USAGE_AFTER'); sys.exit(0 if b > 0 and a >= 0.99 * b else 1)"

all_done() {
  for j in "$V1" "$V2" "$V3" "$S1" "$S2"; do is_state "$j" DONE || return 1; done
}
check "every job finishes" wait_for 300 all_done
for j in "$V1" "$V2" "$V3" "$S1" "$S2"; do line "$j"; done

# The uninterrupted run of the same spec and seed: the preempted job's trajectory is its own.
R=$(as tok-root-0123456789a submit --spec="$WORK/spec.json")
check "the reference job finishes" wait_for 120 is_state "$R" DONE
as tok-root-0123456789a result "$R" --out="$WORK/ref" >/dev/null 2>&1
as tok-alice-0123456789 result "$V1" --out="$WORK/v1" >/dev/null 2>&1
check "the preempted job's alpha history is byte-equal to an uninterrupted run's" \
  cmp -s "$WORK/ref/alpha_history.jsonl" "$WORK/v1/alpha_history.jsonl"

echo "queue test: $pass passed, $fail failed"
if [ "$fail" -gt 0 ]; then
  tail -30 "$COORD_LOG"
  exit 1
fi
