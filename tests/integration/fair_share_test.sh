#!/usr/bin/env bash
# Weighted fair share as real processes (issue 20): a coordinator with a quotas file giving
# tenant vision weight 3 and speech weight 1, four simulated workers in their own process. A
# tenant alone gets every worker; with both tenants busy the worker-seconds of a measured window
# split 75/25 within 5 points; a tenant whose max_workers quota is lowered (the quotas file
# reloaded while running) holds no more workers than it allows.
# Usage: fair_share_test.sh BUILD_DIR
set -uo pipefail
BIN=${1:?usage: fair_share_test.sh BUILD_DIR}
NAS=$BIN/cli/nas
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
SIM=$BIN/coordinator/sim_workers
source "$(dirname "$0")/lib.sh"

profile_table
two_tenant_tokens
cat >"$WORK/quotas.json" <<'EOF'
{"tenants": {"vision": {"weight": 3}, "speech": {"weight": 1}}}
EOF
# Four tasks a round, long enough to outlast the test (cancelled at its end).
cat >"$WORK/spec.json" <<'EOF'
{"space": "fashion-mnist", "device": "local-cpu", "warmupEpochs": 1, "searchEpochs": 1000,
 "trainEpochs": -1, "batchSize": 50, "archEvery": 2, "seed": "5", "parallelTasks": 4}
EOF

CP=$(free_port)
WP=$(free_port)
DB="$WORK/db"
start_coordinator --tokens_file="$WORK/tokens" --quotas_file="$WORK/quotas.json" \
  --worker_port="$WP" --latency_table="$WORK/table.json" || { cat "$COORD_LOG"; exit 1; }
"$SIM" --coordinator="127.0.0.1:$WP" --workers=4 --compute_ms=40 \
  --token_file="$WORK/worker-token" >"$WORK/sim.log" 2>&1 &
PIDS+=("$!")

as() {  # as TOKEN NASCTL_ARGS...
  local token=$1
  shift
  NAS_TOKEN=$token "$NASCTL" --coordinator="127.0.0.1:$CP" "$@"
}
ROOT=tok-root-0123456789a
tenant_line() { as "$ROOT" queue --tenant="$1" | grep "^tenant $1:"; }
usage_of() { tenant_line "$1" | sed -n 's/.* usage \([0-9.]*\) worker-s.*/\1/p'; }
held_by() { tenant_line "$1" | sed -n 's/.* workers \([0-9]*\)\/.*/\1/p'; }
holds() { [ "$(held_by "$1")" = "$2" ]; }

VISION=()
SPEECH=()
for i in 1 2 3; do VISION+=("$(as tok-alice-0123456789 submit --spec="$WORK/spec.json")"); done
check "a tenant alone gets every worker" wait_for 60 holds vision 4

for i in 1 2 3; do SPEECH+=("$(as tok-bob-0123456789ab submit --spec="$WORK/spec.json")"); done
sleep 5  # both tenants busy; the shares settle
V1=$(usage_of vision)
S1=$(usage_of speech)
sleep 20
V2=$(usage_of vision)
S2=$(usage_of speech)
echo "worker-seconds over the window: vision $V1 -> $V2, speech $S1 -> $S2"
split_ok() {
  python3 - "$V1" "$V2" "$S1" "$S2" <<'EOF'
import sys
v1, v2, s1, s2 = map(float, sys.argv[1:])
dv, ds = v2 - v1, s2 - s1
share = dv / (dv + ds)
print(f"vision's share of the window: {100 * share:.1f}% (fair share 75%)")
sys.exit(0 if dv + ds > 0 and abs(share - 0.75) <= 0.05 else 1)
EOF
}
check "weights 3:1 split the worker-seconds 75/25 within 5 points" split_ok

# A quota lowered while running: speech may hold one worker at a time from the next reload.
cat >"$WORK/quotas.json" <<'EOF'
{"tenants": {"vision": {"weight": 3}, "speech": {"weight": 1, "max_workers": 1}}}
EOF
sleep 7  # the coordinator looks at the file every 5 s
over=0
for i in $(seq 1 40); do
  h=$(held_by speech)
  [ -n "$h" ] && [ "$h" -gt 1 ] && over=$((over + 1))
  sleep 0.1
done
check "a tenant at its worker quota gets no more workers (40 samples, $over over)" [ "$over" = 0 ]
check "the tenant still runs within its quota" wait_for 10 holds speech 1

for j in "${VISION[@]}" "${SPEECH[@]}"; do as "$ROOT" cancel "$j" >/dev/null 2>&1; done
echo "fair share test: $pass passed, $fail failed"
if [ "$fail" -gt 0 ]; then
  tail -20 "$COORD_LOG"
  exit 1
fi
