#!/usr/bin/env bash
# Checks deploy/ and docker/ without a cluster or a container engine:
#   (a) every deploy/grafana/*.json parses;
#   (b) every metric a dashboard queries (PromQL `expr`s and label_values() variables) appears as
#       a string literal ("nas_...") in the sources of coordinator/, latency_service/ or worker/,
#       so a dashboard cannot show a metric no server exports (histogram _bucket/_sum/_count
#       suffixes are stripped first);
#   (c) with kubectl: `kubectl kustomize` renders overlays/local, overlays/gpu and the base with
#       the ServiceMonitor component, and the rendered objects say what the overlays promise
#       (CPU workers without a GPU in local, a GPU per worker in gpu, the dashboards ConfigMap);
#       without kubectl: every YAML file under deploy/ and docker/ parses (needs python3-yaml);
#   (d) with promtool: `promtool check config` on deploy/prometheus/*.yml (a promtool built
#       without Kubernetes discovery, as Debian's is, skips the file that needs it);
#   (e) with prometheus: every dashboard query parses as PromQL (a throwaway server is asked each
#       one, Grafana's $variables replaced by plain values).
# A part whose tool is missing prints SKIP; the whole test exits 77 (skipped) without python3.
# Usage: dashboards_test.sh [REPO_ROOT]
set -uo pipefail
ROOT=${1:-$(cd "$(dirname "$0")/../.." && pwd)}
cd "$ROOT" || exit 1
if ! command -v python3 >/dev/null; then
  echo "SKIP: python3 is not installed"
  exit 77
fi
WORK=$(mktemp -d)
prom_pid=""
cleanup() {
  if [ -n "$prom_pid" ]; then kill "$prom_pid" 2>/dev/null; wait "$prom_pid" 2>/dev/null; fi
  rm -rf "$WORK"
}
trap cleanup EXIT

passed=0
failed=0
skipped=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
skip() { echo "SKIP: $*"; skipped=$((skipped + 1)); }

dashboards=(deploy/grafana/*.json)
if [ ! -e "${dashboards[0]}" ]; then
  fail "no dashboards in deploy/grafana/"
  dashboards=()
fi

# ---- (a) every dashboard parses ------------------------------------------------------------------
for f in "${dashboards[@]}"; do
  if err=$(python3 -m json.tool "$f" 2>&1 >/dev/null); then
    pass "$f parses"
  else
    fail "$f does not parse: $err"
  fi
done

# ---- (b) every queried metric is exported by a server ---------------------------------------------
# Prints "FILE<TAB>EXPR" for every PromQL query of every dashboard, then "METRIC<TAB>FILE" lines
# for the metric names in them (to $WORK/metrics).
python3 - "$WORK" "${dashboards[@]}" <<'PY'
import json, re, sys

work, files = sys.argv[1], sys.argv[2:]
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or",
            "unless", "offset", "atan2", "inf", "nan", "start", "end"}

def queries(node):
    """Every PromQL string in a dashboard: panel target exprs and query-variable definitions."""
    if isinstance(node, dict):
        expr = node.get("expr")
        if isinstance(expr, str):
            yield expr
        if node.get("type") == "query" and "name" in node:   # a templating variable
            q = node.get("query")
            q = q.get("query") if isinstance(q, dict) else q
            if isinstance(q, str):
                m = re.fullmatch(r"\s*label_values\((.*),\s*\w+\s*\)\s*", q, re.S)
                if m:
                    yield m.group(1)
                else:
                    m = re.fullmatch(r"\s*query_result\((.*)\)\s*", q, re.S)
                    if m:
                        yield m.group(1)
        for v in node.values():
            yield from queries(v)
    elif isinstance(node, list):
        for v in node:
            yield from queries(v)

def metric_names(expr):
    s = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)           # string literals
    s = re.sub(r"\{[^}]*\}", " ", s)                         # label matchers
    s = re.sub(r"\[[^\]]*\]", " ", s)                        # range selectors
    s = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", s)
    s = re.sub(r"\$\{?\w+\}?", " ", s)                       # Grafana variables
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", s):
        word, rest = m.group(0), s[m.end():]
        if re.match(r"\s*\(", rest) or word in KEYWORDS:     # a function or an operator
            continue
        if re.match(r"\d", s[m.start() - 1:m.start()] or " "):   # 1e-3, 5m
            continue
        names.add(word)
    return names

with open(f"{work}/queries", "w") as q, open(f"{work}/metrics", "w") as out:
    for f in files:
        try:
            dash = json.load(open(f))
        except ValueError:
            continue                                         # reported by (a)
        for expr in queries(dash):
            q.write(f"{f}\t{' '.join(expr.split())}\n")
            for name in sorted(metric_names(expr)):
                out.write(f"{name}\t{f}\n")
PY
source_dirs=()
for d in coordinator latency_service worker; do [ -d "$d" ] && source_dirs+=("$d"); done
if [ ! -s "$WORK/metrics" ]; then
  fail "no metric names found in the dashboards' queries"
else
  while IFS= read -r name; do
    base=$(sed -E 's/_(bucket|sum|count)$//' <<<"$name")
    used_in=$(awk -F'\t' -v n="$name" '$1 == n {print $2}' "$WORK/metrics" | sort -u | paste -sd ' ')
    if [ "$name" = up ]; then
      pass "metric up (Prometheus's own) in $used_in"
    elif [ ${#source_dirs[@]} -gt 0 ] &&
         grep -rqF -e "\"$name\"" -e "\"$base\"" --include='*.cc' --include='*.h' "${source_dirs[@]}"; then
      pass "metric $name ($used_in) is exported"
    else
      fail "metric $name ($used_in) not found in sources (no \"$base\" in ${source_dirs[*]:-coordinator/ latency_service/ worker/})"
    fi
  done < <(cut -f1 "$WORK/metrics" | sort -u)
fi

# ---- (c) the Kubernetes manifests render --------------------------------------------------------
have_yaml=0
python3 -c 'import yaml' 2>/dev/null && have_yaml=1
if command -v kubectl >/dev/null; then
  # The optional ServiceMonitor component, on top of the base (kustomize takes relative paths only).
  mkdir -p "$WORK/with-servicemonitor"
  rel=$(python3 -c 'import os, sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' \
    "$ROOT/deploy/k8s" "$WORK/with-servicemonitor")
  cat >"$WORK/with-servicemonitor/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/base
components:
  - $rel/components/servicemonitor
EOF
  # The optional data-set volume component, likewise.
  mkdir -p "$WORK/with-datasets"
  cat >"$WORK/with-datasets/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - $rel/base
components:
  - $rel/components/datasets
EOF
  for dir in deploy/k8s/overlays/local deploy/k8s/overlays/gpu "$WORK/with-servicemonitor" \
    "$WORK/with-datasets"; do
    label=${dir#"$WORK/"}
    out="$WORK/$(basename "$dir").rendered.yaml"
    if err=$(kubectl kustomize "$dir" 2>&1 >"$out"); then
      pass "kubectl kustomize $label"
    else
      fail "kubectl kustomize $label: $err"
      rm -f "$out"
    fi
  done
  if [ $have_yaml = 1 ]; then
    report=$(python3 - "$WORK" "${dashboards[@]}" <<'PY'
import os, sys, yaml

work, dashboards = sys.argv[1], [os.path.basename(f) for f in sys.argv[2:]]

def load(name):
    path = f"{work}/{name}.rendered.yaml"
    if not os.path.exists(path):
        return None                                  # kustomize failed: reported above
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    return {(d["kind"], d["metadata"]["name"]): d for d in docs}

def check(cond, what):
    print(("PASS: " if cond else "FAIL: ") + what)

def worker(objs):
    return objs.get(("Deployment", "nas-worker"))

def gpus(container):
    res = container.get("resources", {})
    return [res.get(k, {}).get("nvidia.com/gpu") for k in ("requests", "limits")]

for overlay, device, gpu, replicas in (("local", "cpu", None, 2), ("gpu", "cuda", 1, None)):
    objs = load(overlay)
    if objs is None:
        continue
    w = worker(objs)
    check(w is not None, f"overlays/{overlay}: renders Deployment nas-worker")
    if w is None:
        continue
    c = w["spec"]["template"]["spec"]["containers"][0]
    args = c.get("args", [])
    check(f"--device={device}" in args, f"overlays/{overlay}: workers run --device={device}")
    check(any(a.startswith("--coordinator=") for a in args) and
          any(a.startswith("--name=") for a in args),
          f"overlays/{overlay}: workers get --coordinator and --name")
    if gpu is None:
        check(gpus(c) == [None, None], f"overlays/{overlay}: workers request no GPU")
    else:
        check(str(gpus(c)[1]) == str(gpu), f"overlays/{overlay}: workers request nvidia.com/gpu: {gpu}")
    if replicas is not None:
        check(w["spec"].get("replicas") == replicas, f"overlays/{overlay}: {replicas} worker replicas")
    sts = objs.get(("StatefulSet", "coordinator"))
    check(sts is not None and sts["spec"].get("volumeClaimTemplates"),
          f"overlays/{overlay}: coordinator StatefulSet with a volumeClaimTemplate")
    cm = [d for (k, _), d in objs.items()
          if k == "ConfigMap" and d["metadata"].get("labels", {}).get("grafana_dashboard") == "1"]
    check(len(cm) == 1 and sorted(cm[0].get("data", {})) == sorted(dashboards),
          f"overlays/{overlay}: one grafana_dashboard ConfigMap holding {', '.join(sorted(dashboards))}")
    namespaces = {d["metadata"].get("namespace") for (k, _), d in objs.items() if k != "Namespace"}
    check(namespaces == {"nas"}, f"overlays/{overlay}: every object in namespace nas ({namespaces})")

objs = load("with-servicemonitor")
if objs is not None:
    monitors = [n for (k, n) in objs if k == "ServiceMonitor"]
    check(len(monitors) == 2, f"components/servicemonitor: two ServiceMonitors ({monitors})")

objs = load("with-datasets")
if objs is not None:
    pvc = objs.get(("PersistentVolumeClaim", "nas-datasets"))
    check(pvc is not None and pvc["spec"]["accessModes"] == ["ReadOnlyMany"] and
          pvc["metadata"].get("namespace") == "nas",
          "components/datasets: PersistentVolumeClaim nas-datasets, ReadOnlyMany, in nas")
    w = worker(objs)
    spec = w["spec"]["template"]["spec"] if w else {}
    c = spec.get("containers", [{}])[0]
    mounts = {m["name"]: m for m in c.get("volumeMounts", [])}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    check(mounts.get("datasets", {}).get("mountPath") == "/data/datasets" and
          mounts["datasets"].get("readOnly") is True and
          vols.get("datasets", {}).get("persistentVolumeClaim", {}).get("claimName") == "nas-datasets",
          "components/datasets: workers mount nas-datasets read-only at /data/datasets")
    check("--data_roots=/usr/share/datasets,/data/datasets" in c.get("args", []),
          "components/datasets: workers' --data_roots include /data/datasets")
    check("--loader_threads=8" in c.get("args", []),
          "components/datasets: workers decode streamed folders on 8 threads per loader")
    check(len(mounts) >= 3, f"components/datasets: the base's mounts kept ({sorted(mounts)})")
PY
)
    rc=$?
    echo "$report"
    [ $rc = 0 ] || fail "inspecting the rendered manifests failed (exit $rc)"
    passed=$((passed + $(grep -c '^PASS' <<<"$report")))
    failed=$((failed + $(grep -c '^FAIL' <<<"$report")))
  else
    skip "rendered manifests not inspected (python3-yaml is not installed)"
  fi
elif [ $have_yaml = 1 ]; then
  skip "kubectl is not installed: kustomize overlays not rendered; parsing the YAML files instead"
  while IFS= read -r -d '' f; do
    if err=$(python3 -c 'import sys, yaml; list(yaml.safe_load_all(open(sys.argv[1])))' "$f" 2>&1); then
      pass "$f parses"
    else
      fail "$f does not parse: $err"
    fi
  done < <(find deploy docker \( -name '*.yaml' -o -name '*.yml' \) -print0 | sort -z)
else
  skip "neither kubectl nor python3-yaml is installed: Kubernetes manifests not checked"
fi

# ---- (d) the Prometheus configuration is valid ------------------------------------------------------
if command -v promtool >/dev/null; then
  for f in deploy/prometheus/*.yml; do
    if out=$(promtool check config "$f" 2>&1); then
      pass "promtool check config $f"
    elif grep -q 'field kubernetes_sd_configs not found' <<<"$out"; then
      skip "promtool check config $f: this promtool is built without Kubernetes discovery"
    else
      fail "promtool check config $f: $out"
    fi
  done
else
  skip "promtool is not installed: deploy/prometheus/*.yml not checked"
fi

# ---- (e) every dashboard query is valid PromQL ---------------------------------------------------
if command -v prometheus >/dev/null && command -v curl >/dev/null && [ -s "$WORK/queries" ]; then
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  printf 'global:\n  scrape_interval: 1m\n' >"$WORK/empty.yml"
  prometheus --config.file="$WORK/empty.yml" --storage.tsdb.path="$WORK/tsdb" \
    --web.listen-address="127.0.0.1:$port" >"$WORK/prometheus.log" 2>&1 &
  prom_pid=$!
  for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null && break; sleep 0.1; done
  if ! curl -sf "http://127.0.0.1:$port/-/ready" >/dev/null; then
    fail "prometheus did not start: $(tail -n 5 "$WORK/prometheus.log")"
  else
    while IFS=$'\t' read -r file expr; do
      # Grafana's variables: intervals become 5m, every other variable a regex matching anything.
      # shellcheck disable=SC2016  # literal $ in the patterns
      q=$(sed -E -e 's/\$__(rate_)?interval|\$__range/5m/g' -e 's/\$\{?[A-Za-z_]+\}?/.*/g' <<<"$expr")
      reply=$(curl -s --data-urlencode "query=$q" "http://127.0.0.1:$port/api/v1/query")
      if grep -q '"status":"success"' <<<"$reply"; then
        pass "PromQL parses ($file): $expr"
      else
        fail "PromQL ($file): $expr: $reply"
      fi
    done <"$WORK/queries"
  fi
else
  skip "prometheus (or curl) is not installed: dashboard queries not parsed as PromQL"
fi

echo
echo "dashboards_test: $passed passed, $failed failed, $skipped skipped"
[ "$failed" = 0 ]
