#!/usr/bin/env bash
# End to end with real processes: `nas profile --upload` puts this machine's table into a real
# latency_server (run with --writer_tokens_file: the upload sends a writer token, and uploads
# without one or with a user's are refused), `nas latency-check` calibrates the service's
# predictions against networks measured here, and `nas search --latency-service` searches with
# the service's latencies.
# Usage: nas_latency_test.sh path/to/nas path/to/latency_server path/to/latency_ctl
set -uo pipefail
NAS=${1:?usage: nas_latency_test.sh nas latency_server latency_ctl}
SERVER=${2:?usage: nas_latency_test.sh nas latency_server latency_ctl}
CTL=${3:?usage: nas_latency_test.sh nas latency_server latency_ctl}
WORK=$(mktemp -d)
server_pid=""
cleanup() {
  [ -n "$server_pid" ] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
pass=0
fail=0
check() {  # check NAME CONDITION...
  local name=$1
  shift
  if "$@"; then pass=$((pass + 1)); echo "ok   $name"; else fail=$((fail + 1)); echo "FAIL $name"; fi
}
expect_error() {  # expect_error NAME PATTERN COMMAND...
  local name=$1 pattern=$2
  shift 2
  local out rc
  out=$("$@" 2>&1)
  rc=$?
  if [ $rc -ne 0 ] && grep -q -- "$pattern" <<<"$out"; then
    pass=$((pass + 1)); echo "ok   $name"
  else
    fail=$((fail + 1)); echo "FAIL $name (exit $rc): $out" | head -5
  fi
}

WRITER=writer-token-0123456789
USER_TOKEN=user-token-0123456789ab
printf '# TOKEN USER TENANT [ROLE]\n%s profiler lab writer\n%s alice lab\n' "$WRITER" "$USER_TOKEN" \
  >"$WORK/writers"
echo "$WRITER" >"$WORK/writer-token"
echo "$USER_TOKEN" >"$WORK/user-token"
"$SERVER" --address 127.0.0.1 --port 0 --metrics_port -1 --table_dir "$WORK/tables" \
  --writer_tokens_file "$WORK/writers" >"$WORK/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
PORT=$(sed -nE 's/.*listening on [^:]+:([0-9]+).*/\1/p' "$WORK/server.log")
check "server started" test -n "$PORT"
TARGET="127.0.0.1:$PORT"

NAS_LATENCY_TOKEN=$WRITER "$NAS" profile --space fashion-mnist --device x86-test --threads 1 \
  --profile_repeats 5 --calibration_max_error 1e9 --table_out "$WORK/x86-test.json" \
  --upload "$TARGET" >"$WORK/profile.log" 2>&1
check "profile --upload with NAS_LATENCY_TOKEN exits 0" test $? -eq 0
check "profile reports the upload" grep -q "uploaded to $TARGET" "$WORK/profile.log"
check "profile fits a network calibration" grep -q "^calibration: network = layer sum" "$WORK/profile.log"
check "the table holds the calibration" grep -q '"calibration"' "$WORK/x86-test.json"
"$CTL" --server "$TARGET" list >"$WORK/list.log" 2>&1
check "the service lists the uploaded device" grep -q "^x86-test " "$WORK/list.log"
check "the service reports the calibration" grep -q "calibration: network = layer sum" "$WORK/list.log"
check "the upload is persisted" test -s "$WORK/tables/x86-test.table.json"
check "the persisted table keeps the calibration" grep -q '"calibration"' "$WORK/tables/x86-test.table.json"
expect_error "put without a token" "UNAUTHENTICATED" \
  env -u NAS_LATENCY_TOKEN -u NAS_LATENCY_TOKEN_FILE "$CTL" --server "$TARGET" put "$WORK/x86-test.json"
expect_error "put with a user's token" "PERMISSION_DENIED" \
  "$CTL" --server "$TARGET" --token_file "$WORK/user-token" put "$WORK/x86-test.json"
expect_error "profile --upload with a user's token" "has role user; PutTable takes a token of role writer" \
  "$NAS" profile --space fashion-mnist --device x86-test --threads 1 --profile_repeats 3 \
  --calibration_networks 0 --table_out "$WORK/x86-again.json" --upload "$TARGET" \
  --latency_token_file "$WORK/user-token"
check "refused uploads changed nothing" grep -q "^x86-test  *v1 " <("$CTL" --server "$TARGET" list)
check "put with the writer's --token_file" \
  "$CTL" --server "$TARGET" --token_file "$WORK/writer-token" put --merge "$WORK/x86-test.json"
check "the accepted put is version 2" grep -q "^x86-test  *v2 " <("$CTL" --server "$TARGET" list)

"$NAS" latency-check --latency-service "$TARGET" --device x86-test --samples 3 \
  --profile_repeats 5 >"$WORK/check.log" 2>&1
check "latency-check exits 0" test $? -eq 0
check "latency-check prints RMSE and shares" grep -q "RMSE .* within +-10%: .* within +-5%" "$WORK/check.log"
check "latency-check lists 3 networks" test "$(grep -c '^| [0-9]' "$WORK/check.log")" -eq 3
check "latency-check scores the layer sum and the calibrated prediction" \
  bash -c "grep -q '^layer sum only: .*RMSE' '$WORK/check.log' && grep -q '^layer sum + calibration: .*RMSE' '$WORK/check.log'"
check "latency-check measures each network in 3 interleaved passes" \
  grep -q "median of 3 interleaved passes" "$WORK/check.log"
check "latency-check re-times 8 table layers for the machine's speed" \
  grep -qE "^machine speed against the table: 8 of its layers re-timed now take [0-9.]+x" "$WORK/check.log"
expect_error "latency-check on an unknown device" "pixel9" \
  "$NAS" latency-check --latency_service "$TARGET" --device pixel9 --samples 1
expect_error "latency-check without a service" "latency_service" "$NAS" latency-check --samples 1
expect_error "search with a table and a service" "latency_table" \
  "$NAS" search --latency_service "$TARGET" --latency_table "$WORK/x86-test.json" --out "$WORK/x"
expect_error "search against an unknown device" "pixel9" \
  "$NAS" search --latency_service "$TARGET" --device pixel9 --out "$WORK/x"

if [ -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  "$NAS" search --latency-service "$TARGET" --device x86-test --train_subset 1200 \
    --valid_size 200 --test_subset 300 --warmup_epochs 1 --search_epochs 2 --train_epochs 1 \
    --baseline=false --threads 1 --profile_repeats 5 --progress=false --out "$WORK/run" \
    >"$WORK/search.log" 2>&1
  check "search --latency-service exits 0" test $? -eq 0
  check "search used the service's table" grep -q "latency service $TARGET" "$WORK/run/latency_table.json"
  check "the job's table carries the calibration" grep -q '"calibration"' "$WORK/run/latency_table.json"
  check "search did not profile" bash -c "! grep -q 'layers timed' '$WORK/search.log'"
else
  echo "skip search: Fashion-MNIST not installed (apt-get install dataset-fashion-mnist)"
fi
echo "$pass passed, $fail failed"
[ $fail -eq 0 ]
