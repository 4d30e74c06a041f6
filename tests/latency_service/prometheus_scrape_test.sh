#!/usr/bin/env bash
# A real Prometheus server (Debian package `prometheus`) scrapes a real latency_server on
# loopback; the test then asks Prometheus's HTTP API for the service's metrics and checks the
# values the queries it made must have produced. Skips (exit 77) when prometheus is missing.
# Usage: prometheus_scrape_test.sh path/to/latency_server path/to/latency_ctl
set -uo pipefail
SERVER=${1:?usage: prometheus_scrape_test.sh latency_server latency_ctl}
CTL=${2:?usage: prometheus_scrape_test.sh latency_server latency_ctl}
if ! command -v prometheus >/dev/null; then
  echo "SKIP: prometheus is not installed (apt-get install prometheus)"
  exit 77
fi
WORK=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  rm -rf "$WORK"
}
trap cleanup EXIT

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

"$SERVER" --address 127.0.0.1 --port 0 --metrics_port 0 >"$WORK/server.log" 2>&1 &
pids+=($!)
for _ in $(seq 100); do grep -q "listening on" "$WORK/server.log" && break; sleep 0.1; done
line=$(grep "listening on" "$WORK/server.log") || { cat "$WORK/server.log"; exit 1; }
GRPC_PORT=$(sed -E 's/.*listening on [^:]+:([0-9]+).*/\1/' <<<"$line")
METRICS_PORT=$(sed -E 's/.*metrics on :([0-9]+).*/\1/' <<<"$line")
echo "latency_server: grpc $GRPC_PORT, metrics $METRICS_PORT"

# Two measured keys and one the predictor answers; then an unknown device (an error).
"$CTL" --server "127.0.0.1:$GRPC_PORT" query pixel1-tflite \
  Conv-input:224x224x3-output:112x112x32 Logits-input:7x7x1280-output:1000 \
  expanded_conv-input:28x28x48-output:28x28x48-expand:4-kernel:5-stride:1-idskip:1 || exit 1
"$CTL" --server "127.0.0.1:$GRPC_PORT" query pixel9 Conv-input:224x224x3-output:112x112x32 \
  2>/dev/null && { echo "FAIL: unknown device answered"; exit 1; }

PROM_PORT=$(free_port)
cat >"$WORK/prometheus.yml" <<YAML
global:
  scrape_interval: 1s
scrape_configs:
  - job_name: latency
    static_configs:
      - targets: ["127.0.0.1:$METRICS_PORT"]
YAML
prometheus --config.file="$WORK/prometheus.yml" --storage.tsdb.path="$WORK/tsdb" \
  --web.listen-address="127.0.0.1:$PROM_PORT" >"$WORK/prometheus.log" 2>&1 &
pids+=($!)

# Value of an instant query (the first series), or empty.
query() {
  curl -s --get "http://127.0.0.1:$PROM_PORT/api/v1/query" --data-urlencode "query=$1" |
    python3 -c 'import json,sys; r=json.load(sys.stdin)["data"]["result"]; print(r[0]["value"][1] if r else "")' 2>/dev/null
}

# Wait (at most ~60 scrapes) until Prometheus has scraped the target once.
for _ in $(seq 120); do
  [ "$(query 'up{job="latency"}')" = "1" ] && break
  sleep 0.5
done

pass=0
fail=0
expect() {  # expect PROMQL VALUE
  local got
  got=$(query "$1")
  if [ "$got" = "$2" ]; then
    pass=$((pass + 1)); echo "ok   $1 = $2"
  else
    fail=$((fail + 1)); echo "FAIL $1 = '$got', expected $2"
  fi
}
expect 'up{job="latency"}' 1
expect 'nas_latency_queries_total{device="pixel1-tflite",source="measured"}' 2
expect 'nas_latency_queries_total{device="pixel1-tflite",source="predicted"}' 1
expect 'nas_latency_cache_misses_total{device="pixel1-tflite"}' 1
expect 'nas_latency_query_keys_count' 1
expect 'nas_latency_query_keys_sum' 3
expect 'nas_latency_query_seconds_count' 1
expect 'nas_latency_query_errors_total{code="NOT_FOUND"}' 1
expect 'nas_latency_devices' 1
expect 'count(nas_latency_queries_total{device="pixel9"})' ""
echo "$pass passed, $fail failed"
if [ $fail -ne 0 ]; then tail -20 "$WORK/prometheus.log"; exit 1; fi
