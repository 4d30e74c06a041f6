#!/usr/bin/env bash
# `nasctl delete` against a real coordinator (no workers, no latency source: a submitted job
# waits): a job that has not ended is refused, a cancelled one is deleted and stays deleted
# across a restart; `--retention` must be a positive duration or inf.
# Usage: nasctl_delete_test.sh BUILD_DIR
set -uo pipefail
BIN=${1:?usage: nasctl_delete_test.sh BUILD_DIR}
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
source "$(dirname "$0")/lib.sh"
nasctl() { "$NASCTL" --coordinator="127.0.0.1:$CP" "$@"; }
fails_with() {  # fails_with PATTERN NASCTL_ARGS...: nasctl exits non-zero, saying PATTERN
  local pattern=$1 out
  shift
  out=$(nasctl "$@" 2>&1) && return 1
  grep -q -- "$pattern" <<<"$out"
}

CP=$(free_port)
DB="$WORK/db"
start_coordinator --retention=inf
JOB=$(nasctl submit --device=local-cpu)
KEPT=$(nasctl submit --device=local-cpu)
check "submitted two jobs" test -n "$JOB" -a -n "$KEPT"
check "delete refuses a job that has not ended" \
  fails_with "FAILED_PRECONDITION.*cancel it first" delete "$JOB"
check "cancel" nasctl cancel "$JOB"
check "delete a cancelled job" nasctl delete "$JOB"
check "its status is then NOT_FOUND" fails_with NOT_FOUND status "$JOB"
check "a second delete is NOT_FOUND" fails_with NOT_FOUND delete "$JOB"
check "list shows only the other job" test "$(nasctl list | grep -c .)" -eq 1
kill -TERM "$COORD_PID"
wait "$COORD_PID" 2>/dev/null
start_coordinator
check "after a restart the deleted job stays deleted" fails_with NOT_FOUND status "$JOB"
check "and the other one is there" grep -q "$KEPT" <<<"$(nasctl status "$KEPT")"
kill -TERM "$COORD_PID"
wait "$COORD_PID" 2>/dev/null

"$COORD" --db="$WORK/db2" --port=0 --metrics_port=-1 --retention=0s >"$WORK/zero.log" 2>&1
code=$?
check "--retention=0s is refused (status $code)" test "$code" -eq 2
check "naming the flag" grep -q -- "--retention" "$WORK/zero.log"

echo "nasctl_delete_test: $pass passed, $fail failed"
if [ $fail -ne 0 ]; then
  for f in "$WORK"/coordinator-*.log; do echo "--- $f"; tail -n 8 "$f"; done
fi
[ $fail -eq 0 ]
