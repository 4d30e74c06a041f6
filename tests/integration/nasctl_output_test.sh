#!/usr/bin/env bash
# nasctl for scripts (issue 23), against a real coordinator (with a tokens file and a latency
# table) and simulated workers in their own process:
# - `-o json` parses and has exactly JobStatus's fields (taken from proto/nas/search.proto), on
#   status, list ({"jobs": [...]}), watch (one object per line) and queue; `-o yaml` reads back
#   as the same tree (when python3-yaml is there); result's summary parses;
# - every JobSpec field has a flag that lands in that field (`submit --dry_run -o json`), and
#   `submit --help` / `help submit` list them;
# - each documented exit code from a real scenario: done (watch to DONE), failed (a device the
#   coordinator's table lacks), cancelled (cancel while watching), not found, unauthenticated (no
#   token), unavailable (nobody listening);
# - watch follows the same job across a kill -9 and restart of the coordinator on the same port
#   and ends with the done code.
# Usage: nasctl_output_test.sh BUILD_DIR
set -uo pipefail
BIN=${1:?usage: nasctl_output_test.sh BUILD_DIR}
NAS=$BIN/cli/nas
NASCTL=$BIN/cli/nasctl
COORD=$BIN/coordinator/coordinator
SIM=$BIN/coordinator/sim_workers
PROTO="$(dirname "$0")/../../proto/nas/search.proto"
source "$(dirname "$0")/lib.sh"

# The fields of a message, from the .proto (what JSON with the proto's names must show).
fields_of() {  # fields_of MESSAGE: one name per line, in order
  python3 - "$PROTO" "$1" <<'PY'
import re, sys
text = re.sub(r'//[^\n]*', '', open(sys.argv[1]).read())
body = re.search(r'message\s+%s\s*\{(.*?)\n\}' % sys.argv[2], text, re.S).group(1)
for m in re.finditer(r'^\s*(?:repeated\s+)?([\w.]+)\s+(\w+)\s*=\s*\d+\s*;', body, re.M):
    print(m.group(1), m.group(2))
PY
}
JOBSTATUS_FIELDS=$(fields_of JobStatus | awk '{print $2}' | paste -sd, -)
JOBSPEC_FIELDS=$(fields_of JobSpec)
echo "JobStatus fields: $JOBSTATUS_FIELDS"

# --- without a coordinator: flags, help, usage ----------------------------------------------
# Every JobSpec field (but owner, which the coordinator sets) has a flag of its name that lands
# in that field: distinct values per field, read back from --dry_run's JSON.
SPEC_ARGS=()
EXPECT="$WORK/expect.json"
python3 - "$EXPECT" >"$WORK/spec-args" <<PY
import json, sys
fields = """$JOBSPEC_FIELDS""".split("\n")
expect = {}
for i, line in enumerate(fields):
    kind, name = line.split()
    if name == "owner":
        continue
    if kind == "string":
        v = "v-" + name; arg = v
    elif kind == "bool":
        v = True; arg = "true"
    elif kind == "double":
        v = i + 0.5; arg = repr(v)
    elif kind in ("int64", "uint64"):
        v = str(1000 + i); arg = v          # 64-bit integers are JSON strings
    else:
        v = 100 + i; arg = str(v)
    expect[name] = v
    print("--%s=%s" % (name, arg))
json.dump(expect, open(sys.argv[1], "w"))
PY
mapfile -t SPEC_ARGS <"$WORK/spec-args"
every_field_has_a_flag() {
  "$NASCTL" submit --dry_run -o json "${SPEC_ARGS[@]}" >"$WORK/dry.json" || return 1
  python3 - "$EXPECT" "$WORK/dry.json" <<'PY'
import json, sys
expect, got = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
bad = {k: (v, got.get(k)) for k, v in expect.items() if got.get(k) != v}
if bad: print("fields not set by their flag:", bad)
sys.exit(1 if bad else 0)
PY
}
check "every JobSpec field but owner has a flag that sets it (${#SPEC_ARGS[@]} flags)" \
  every_field_has_a_flag
echo '{"device": "from-file", "seed": "3", "batchSize": 64}' >"$WORK/override.json"
flags_override_the_file() {
  "$NASCTL" submit --dry_run -o json --spec="$WORK/override.json" --seed=0 --batch_size=32 |
    python3 -c 'import json,sys; d=json.load(sys.stdin); sys.exit(0 if (d["device"], d["seed"], d["batch_size"]) == ("from-file", "0", 32) else 1)'
}
check "flags override --spec, also with a zero value" flags_override_the_file
help_lists_fields() {
  local out
  out=$("$1" "${@:2}") || return 1
  for f in $(echo "$JOBSPEC_FIELDS" | awk '$2 != "owner" {print $2}'); do
    grep -q -- "--$f" <<<"$out" || { echo "help lacks --$f"; return 1; }
  done
  grep -q "examples:" <<<"$out"
}
check "nasctl submit --help lists every JobSpec flag, with examples" help_lists_fields "$NASCTL" submit --help
check "nasctl help submit: the same" help_lists_fields "$NASCTL" help submit
help_has_exit_codes() {
  local out
  out=$("$NASCTL" help) || return 1
  for w in "0  done" "3  failed" "4  cancelled" "5  not found" "6  unauthenticated" "7  unavailable"; do
    grep -q "$w" <<<"$out" || return 1
  done
}
check "nasctl help documents the exit codes" help_has_exit_codes
for c in list queue status watch cancel delete result; do
  check "nasctl help $c: examples" sh -c "\"$NASCTL\" $c --help | grep -q examples:"
done
check "a bad -o is a usage error (2)" sh -c "\"$NASCTL\" -o xml list 2>/dev/null; [ \$? -eq 2 ]"

# --- a coordinator with tokens, a table and simulated workers ---------------------------------
"$NAS" profile --space fashion-mnist --device local-cpu --threads 1 --profile_repeats 3 \
  --table_out "$WORK/table.json" >"$WORK/profile.log" 2>&1 || { cat "$WORK/profile.log"; exit 1; }
cat >"$WORK/tokens" <<'EOF2'
tok-alice-0123456789 alice vision
tok-worker-012345678 sim lab worker
EOF2
echo tok-worker-012345678 >"$WORK/worker-token"
export NAS_TOKEN=tok-alice-0123456789
spec() {  # spec FILE SEARCH_EPOCHS [DEVICE]
  cat >"$1" <<EOF2
{"space": "fashion-mnist", "device": "${3:-local-cpu}", "warmupEpochs": 1, "searchEpochs": $2,
 "trainEpochs": -1, "batchSize": 50, "archEvery": 2, "seed": "5", "parallelTasks": 1,
 "chainSteps": 1}
EOF2
}
spec "$WORK/short.json" 2
spec "$WORK/medium.json" 20
spec "$WORK/long.json" 200
spec "$WORK/unknown-device.json" 2 no-such-device
CP=$(free_port)
WP=$(free_port)
DB="$WORK/db"
COORD_FLAGS=(--tokens_file="$WORK/tokens" --worker_port="$WP" --latency_table="$WORK/table.json")
start_coordinator "${COORD_FLAGS[@]}" || { cat "$COORD_LOG"; exit 1; }
"$SIM" --coordinator="127.0.0.1:$WP" --workers=3 --compute_ms=40 \
  --token_file="$WORK/worker-token" >"$WORK/sim.log" 2>&1 &
PIDS+=("$!")
ctl() { "$NASCTL" --coordinator="127.0.0.1:$CP" "$@"; }
exit_code() {  # exit_code WANT NASCTL_ARGS...: nasctl exits with WANT
  local want=$1 got
  shift
  ctl "$@" >"$WORK/last.out" 2>"$WORK/last.err"
  got=$?
  [ "$got" -eq "$want" ] || { echo "exit $got, want $want"; tail -n 3 "$WORK/last.err"; return 1; }
}

DONE_JOB=$(ctl submit --spec="$WORK/short.json")
check "done: watch of a job that finishes exits 0" exit_code 0 watch "$DONE_JOB"
has_jobstatus_fields() {  # FILE: a JobStatus in JSON with exactly the .proto's fields
  python3 - "$1" "$JOBSTATUS_FIELDS" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
want = sys.argv[2].split(",")
if list(d) != want:
    print("fields", sorted(set(d) ^ set(want)), "differ"); sys.exit(1)
PY
}
ctl -o json status "$DONE_JOB" >"$WORK/status.json"
check "status -o json parses, with JobStatus's fields" has_jobstatus_fields "$WORK/status.json"
check "and says DONE" python3 -c "import json; assert json.load(open('$WORK/status.json'))['state'] == 'DONE'"
list_json() {
  ctl list --output=json >"$WORK/list.json" || return 1
  python3 - "$WORK/list.json" "$JOBSTATUS_FIELDS" "$DONE_JOB" <<'PY'
import json, sys
d = json.load(open(sys.argv[1]))
jobs = d["jobs"]
assert any(j["job_id"] == sys.argv[3] for j in jobs), "job missing"
for j in jobs:
    assert list(j) == sys.argv[2].split(","), list(j)
PY
}
check "list -o json: {\"jobs\": [JobStatus...]}" list_json
watch_json() {
  ctl -o json watch "$DONE_JOB" >"$WORK/watch.jsonl" || return 1
  python3 - "$WORK/watch.jsonl" "$JOBSTATUS_FIELDS" <<'PY'
import json, sys
lines = open(sys.argv[1]).read().splitlines()
assert lines
for l in lines:
    assert list(json.loads(l)) == sys.argv[2].split(",")
assert json.loads(lines[-1])["state"] == "DONE"
PY
}
check "watch -o json: one JobStatus per line, the last DONE" watch_json
check "queue -o json parses" sh -c "\"$NASCTL\" --coordinator=127.0.0.1:$CP queue -o json | python3 -c 'import json,sys; d=json.load(sys.stdin); assert \"tenants\" in d and \"policy\" in d'"
if python3 -c 'import yaml' 2>/dev/null; then
  yaml_same() {
    ctl -o yaml "$@" >"$WORK/out.yaml" && ctl -o json "$@" >"$WORK/out.json" || return 1
    python3 -c "import json, yaml; a = yaml.safe_load(open('$WORK/out.yaml')); b = json.load(open('$WORK/out.json')); assert a == b, (a, b)"
  }
  check "status -o yaml reads back as the JSON tree" yaml_same status "$DONE_JOB"
  check "list -o yaml reads back as the JSON tree" yaml_same list
  quoting() {  # strings YAML would misread unquoted: the same tree from -o yaml and -o json
    local args=(submit --dry_run "--space_json=a: b # c
- 'x' \"y\" \\ \t é"$'\x01\t' --dataset=yes --device=null --loss=" lead" --arch_algo=0123
      --tenant="@x" --data_dir="*a" --space="[1]")
    "$NASCTL" -o yaml "${args[@]}" >"$WORK/q.yaml" && "$NASCTL" -o json "${args[@]}" >"$WORK/q.json" &&
      python3 -c "import json, yaml; a = yaml.safe_load(open('$WORK/q.yaml')); b = json.load(open('$WORK/q.json')); assert a == b, (a, b)"
  }
  check "submit --dry_run -o yaml: strings that need quotes read back as the JSON tree" quoting
else
  echo "skip yaml checks: no python3-yaml"
fi
result_json() {
  ctl -o json result "$DONE_JOB" --out="$WORK/result" >"$WORK/result.json" || return 1
  python3 -c "import json; d = json.load(open('$WORK/result.json')); assert d['job_id'] == '$DONE_JOB' and d['result_directory'] == '$WORK/result' and 'report_json' not in d, d"
}
check "result -o json: the summary parses" result_json
check "the default output is still the table line" sh -c "\"$NASCTL\" --coordinator=127.0.0.1:$CP status $DONE_JOB | grep -q '^$DONE_JOB *DONE .* round [0-9]* (written [0-9]*)'"

FAILED_JOB=$(ctl submit --spec="$WORK/unknown-device.json")
check "failed: watch of a job whose device the table lacks exits 3" exit_code 3 watch "$FAILED_JOB"

CANCEL_JOB=$(ctl submit --spec="$WORK/long.json")
ctl watch "$CANCEL_JOB" >"$WORK/cancel-watch.log" 2>&1 &
CANCEL_WATCH=$!
PIDS+=("$CANCEL_WATCH")
running() { ctl status "$CANCEL_JOB" | grep -q " RUNNING "; }
wait_for 30 running
ctl cancel "$CANCEL_JOB"
wait "$CANCEL_WATCH"
code=$?
check "cancelled: watch of a job cancelled meanwhile exits 4 (got $code)" test "$code" -eq 4

check "not found: watch of an unknown job exits 5" exit_code 5 watch j999999-nosuchjob
check "not found: status of an unknown job exits 5" exit_code 5 status j999999-nosuchjob
unauthenticated() { NAS_TOKEN= exit_code 6 watch "$DONE_JOB"; }
check "unauthenticated: watch without a token exits 6" unauthenticated
nobody() {
  local port got
  port=$(free_port)
  "$NASCTL" --coordinator="127.0.0.1:$port" watch "$DONE_JOB" --reconnect_for=2s 2>"$WORK/nobody.err"
  got=$?
  [ "$got" -eq 7 ] || { echo "exit $got"; cat "$WORK/nobody.err"; return 1; }
}
check "unavailable: watch with nobody listening exits 7 after --reconnect_for" nobody
check "unavailable: status with nobody listening exits 7" \
  sh -c "\"$NASCTL\" --coordinator=127.0.0.1:$(free_port) status J 2>/dev/null; [ \$? -eq 7 ]"

# --- watch across a kill -9 and restart of the coordinator ------------------------------------
JOB=$(ctl submit --spec="$WORK/medium.json")
ctl -o json watch "$JOB" --reconnect_for=60s >"$WORK/restart-watch.jsonl" 2>"$WORK/restart-watch.err" &
RESTART_WATCH=$!
PIDS+=("$RESTART_WATCH")
round_at_least() {
  local r
  r=$(ctl -o json status "$JOB" | python3 -c 'import json,sys; print(json.load(sys.stdin)["round"])')
  [ -n "$r" ] && [ "$r" -ge "$1" ]
}
check "the watched job runs" wait_for 60 round_at_least 3
crash_coordinator "${COORD_FLAGS[@]}" || { cat "$COORD_LOG"; exit 1; }
wait "$RESTART_WATCH"
code=$?
check "watch across a kill -9 and restart ends with the done code (got $code)" test "$code" -eq 0
check "it said it reconnected" grep -q "reconnected" "$WORK/restart-watch.err"
same_job_to_the_end() {
  python3 - "$WORK/restart-watch.jsonl" "$JOB" <<'PY'
import json, sys
s = [json.loads(l) for l in open(sys.argv[1]).read().splitlines()]
assert all(x["job_id"] == sys.argv[2] for x in s)
assert s[-1]["state"] == "DONE", s[-1]["state"]
rounds = [int(x["round"]) for x in s]
print("statuses", len(s), "rounds", rounds[0], "->", rounds[-1])
PY
}
check "it followed the same job to DONE" same_job_to_the_end

# Keepalive: a watch of a job that does not change (no worker) pings every 10 s for 35 s; the
# coordinator permits it (before, gRPC's default answered GOAWAY too_many_pings and watch had to
# reconnect).
CP_IDLE=$(free_port)
"$COORD" --address=127.0.0.1 --port="$CP_IDLE" --metrics_port=-1 --db="$WORK/db-idle" \
  --latency_table="$WORK/table.json" >"$WORK/idle-coordinator.log" 2>&1 &
PIDS+=("$!")
wait_for 30 grep -q "listening on port $CP_IDLE" "$WORK/idle-coordinator.log"
IDLE_JOB=$("$NASCTL" --coordinator="127.0.0.1:$CP_IDLE" submit --spec="$WORK/short.json")
timeout 35 "$NASCTL" --coordinator="127.0.0.1:$CP_IDLE" watch "$IDLE_JOB" --keepalive=10s \
  >"$WORK/idle-watch.out" 2>"$WORK/idle-watch.err"
code=$?
check "an idle watch with 10 s keepalive pings runs on (timeout's 124, got $code)" test "$code" -eq 124
check "and is never told too_many_pings nor reconnects" \
  sh -c "! grep -qiE 'too_many_pings|reconnect' '$WORK/idle-watch.err'"

echo "nasctl_output_test: $pass passed, $fail failed"
if [ "$fail" -gt 0 ]; then
  tail -n 20 "$COORD_LOG"
  cat "$WORK/restart-watch.err"
  exit 1
fi
