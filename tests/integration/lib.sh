# Helpers shared by the integration tests that run the service as real processes on loopback.
# Sourced after the caller sets NASCTL, COORD and WORKER (binaries); sets WORK (a temporary
# directory removed at exit, with every process in PIDS killed).
command -v python3 >/dev/null || { echo "SKIP: python3 is needed"; exit 77; }
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -CONT "$p" 2>/dev/null; kill -9 "$p" 2>/dev/null; done
  wait 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
pass=0
fail=0
check() {  # check NAME COMMAND...
  local name=$1
  shift
  if "$@"; then
    pass=$((pass + 1))
    echo "ok   $name"
  else
    fail=$((fail + 1))
    echo "FAIL $name"
  fi
}
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for() {  # wait_for SECONDS COMMAND...: polls COMMAND every 0.1 s
  local deadline=$((SECONDS + $1))
  shift
  while [ $SECONDS -lt $deadline ]; do
    "$@" && return 0
    sleep 0.1
  done
  return 1
}
status() { "$NASCTL" --coordinator="127.0.0.1:$CP" status "$JOB" 2>/dev/null; }
round_of() { status | sed -n 's/.* round \([0-9]*\) .*/\1/p'; }
written_of() { status | sed -n 's/.* (written \([0-9]*\)) .*/\1/p'; }
round_at_least() { local r; r=$(round_of); [ -n "$r" ] && [ "$r" -ge "$1" ]; }
state_is() { status | grep -q " $1 "; }
start_coordinator() {  # start_coordinator EXTRA_FLAGS...: on $CP with the RocksDB in $DB
  COORD_LOG="$WORK/coordinator-$CP-$RANDOM.log"
  "$COORD" --address=127.0.0.1 --port="$CP" --metrics_port=-1 --db="$DB" --lease_ms=3000 \
    --heartbeat_ms=300 "$@" >"$COORD_LOG" 2>&1 &
  COORD_PID=$!
  PIDS+=("$COORD_PID")
  wait_for 30 grep -q "listening on port $CP" "$COORD_LOG"
}
start_worker() {  # start_worker NAME EXTRA_FLAGS...: sets WORKER_PID
  local name=$1
  shift
  "$WORKER" --coordinator="127.0.0.1:$CP" --threads=1 --name="$name" \
    --stats_file="$WORK/$name.jsonl" "$@" >"$WORK/$name.log" 2>&1 &
  WORKER_PID=$!
  PIDS+=("$WORKER_PID")
}
crash_coordinator() {  # crash_coordinator FLAGS...: kill -9 the coordinator, start it again
  # on the same port and RocksDB directory with FLAGS
  kill -9 "$COORD_PID"
  wait "$COORD_PID" 2>/dev/null
  start_coordinator "$@"
}
profile_table() {  # a latency table of the fashion-mnist space on this machine: $WORK/table.json
  "$NAS" profile --space fashion-mnist --device local-cpu --threads 1 --profile_repeats 3 \
    --table_out "$WORK/table.json" >"$WORK/profile.log" 2>&1 || { cat "$WORK/profile.log"; exit 1; }
}
two_tenant_tokens() {  # $WORK/tokens: alice (vision), bob (speech), root (admin), a worker
  # credential (also in $WORK/worker-token)
  cat >"$WORK/tokens" <<'EOF'
tok-alice-0123456789 alice vision
tok-bob-0123456789ab bob speech
tok-root-0123456789a root lab admin
tok-worker-012345678 sim lab worker
EOF
  echo tok-worker-012345678 >"$WORK/worker-token"
}
