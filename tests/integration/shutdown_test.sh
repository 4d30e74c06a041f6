#!/usr/bin/env bash
# Shutdown in order (issue 19): SIGTERM to a coordinator with an open `nasctl watch` stream and a
# worker's long poll in flight. The process must exit by itself, with status 0, within a bound
# (it used to use the job manager after destroying it and then spin at full CPU), and the watch
# and the worker must both be told (the stream ends, the worker sees the coordinator go).
# Usage: shutdown_test.sh BUILD_DIR
set -uo pipefail
BIN=${1:?usage: shutdown_test.sh BUILD_DIR}
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
WORKER=$BIN/worker/nas_worker
source "$(dirname "$0")/lib.sh"

for round in 1 2 3; do
  CP=$(free_port)
  DB="$WORK/db-$round"
  # No latency source: the job waits in PREPARING, so the worker only long-polls.
  start_coordinator
  start_worker "w$round"
  JOB=$("$NASCTL" --coordinator="127.0.0.1:$CP" submit --device=local-cpu)
  # --reconnect_for=0: the watch ends when the stream does (by default it would reconnect).
  "$NASCTL" --coordinator="127.0.0.1:$CP" watch "$JOB" --reconnect_for=0 \
    >"$WORK/watch-$round.log" 2>&1 &
  WATCH_PID=$!
  PIDS+=("$WATCH_PID")
  wait_for 30 grep -q "registered as" "$WORK/w$round.log"
  sleep 1  # the watch stream and a long poll are open
  kill -TERM "$COORD_PID"
  exited() { ! kill -0 "$COORD_PID" 2>/dev/null; }
  check "round $round: the coordinator exits within 15 s of SIGTERM" wait_for 15 exited
  wait "$COORD_PID"
  code=$?
  check "round $round: and exits with status 0 (got $code)" test "$code" -eq 0
  watch_ended() { ! kill -0 "$WATCH_PID" 2>/dev/null; }
  check "round $round: the open watch stream ended" wait_for 15 watch_ended
  kill -9 "$WORKER_PID" 2>/dev/null
done

echo "shutdown_test: $pass passed, $fail failed"
if [ $fail -ne 0 ]; then
  for f in "$WORK"/coordinator-*.log "$WORK"/watch-*.log; do echo "--- $f"; tail -n 8 "$f"; done
fi
[ $fail -eq 0 ]
