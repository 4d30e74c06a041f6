#!/usr/bin/env bash
# report.html as a person sees it: a tiny real search (`nas search`, sampled paths evaluated with
# inherited weights) writes the page; headless Chromium (Debian's chromium) renders it
#   - with no console message at all (errors, CSP violations): checked against two controls, a
#     page whose script logs an error and the report with an <img> of a remote address injected,
#     which the report's Content-Security-Policy must block (so the page cannot reach a network
#     and the console check can fail);
#   - into a DOM (--dump-dom) with one heat-map row per edge, one block per edge with the derived
#     candidate, every section, and a dot per sampled path in the accuracy-latency view;
#   - into a screenshot (PNG read with python3-pil) in which every derived block's colour and
#     the heat map's final-distribution colours are painted.
# Usage: report_html_test.sh BUILD_DIR
set -uo pipefail
BUILD=${1:?usage: report_html_test.sh BUILD_DIR}
NAS="$BUILD/cli/nas"
source "$(dirname "$0")/lib.sh"  # WORK (removed at exit), check
PY=/usr/bin/python3  # Debian's, with python3-pil (not a pyenv shim)
CHROMIUM=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$CHROMIUM" ]; then
  echo "SKIP: chromium is not installed (scripts/setup.sh installs Debian's chromium)"
  exit 77
fi
if [ ! -f /usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz ]; then
  echo "SKIP: dataset-fashion-mnist is not installed"
  exit 77
fi
"$PY" -c 'import PIL' 2>/dev/null || { echo "SKIP: python3-pil is not installed"; exit 77; }

# Headless Chromium on a file: its console messages (stderr with --enable-logging) go to $2.log.
chrome() {  # chrome FILE OUT_PREFIX EXTRA_FLAGS...
  local file=$1 out=$2
  shift 2
  timeout 120 "$CHROMIUM" --headless --no-sandbox --disable-gpu --hide-scrollbars \
    --no-first-run --disable-extensions --user-data-dir="$WORK/chrome-profile" \
    --enable-logging=stderr --v=0 --window-size=1040,2600 "$@" "file://$file" \
    >"$out.out" 2>"$out.log"
}
console_lines() { grep -E "CONSOLE|Content Security Policy|Refused to" "$1" || true; }

"$NAS" search --train_subset 1200 --valid_size 200 --test_subset 300 --warmup_epochs 1 \
  --search_epochs 2 --train_epochs 1 --batch_size 50 --arch_every 2 --threads 1 \
  --progress=false --cache_dir "$WORK/cache" --profile_repeats 6 --sampled_paths 6 \
  --out "$WORK/run" >"$WORK/search.log" 2>&1
check "search exits 0" test $? -eq 0
REPORT="$WORK/run/report.html"
check "search wrote report.html" test -s "$REPORT"
EDGES=$("$PY" -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["choices"]))' \
  "$WORK/run/architecture.json")

# ---- the controls: the console check sees an error, and the CSP blocks a remote image --------
cat >"$WORK/control.html" <<'EOF'
<!DOCTYPE html><html><body><p>control</p><script>console.error("control error 1234")</script></body></html>
EOF
chrome "$WORK/control.html" "$WORK/control" --dump-dom
check "control: a console error is seen" grep -q "control error 1234" "$WORK/control.log"
sed 's|<body>|<body><img src="http://192.0.2.1/x.png" alt="">|' "$REPORT" >"$WORK/remote.html"
chrome "$WORK/remote.html" "$WORK/remote" --dump-dom
check "control: the report's CSP refuses a remote image (and says so on the console)" \
  grep -q "Content Security Policy" "$WORK/remote.log"

# ---- the report -------------------------------------------------------------------------------
chrome "$REPORT" "$WORK/report" --dump-dom
check "chromium renders the report" test -s "$WORK/report.out"
msgs=$(console_lines "$WORK/report.log")
if [ -n "$msgs" ]; then echo "$msgs"; fi
check "no console message" test -z "$msgs"
"$PY" - "$WORK/report.out" "$EDGES" "$WORK/run/architecture.json" "$WORK/run/report.json" \
  >"$WORK/dom.txt" 2>&1 <<'PY'
import json, sys
from html.parser import HTMLParser
dom, edges = open(sys.argv[1]).read(), int(sys.argv[2])
choices = json.load(open(sys.argv[3]))["choices"]
paths = json.load(open(sys.argv[4]))["sampled_paths"]["paths"]
rows, blocks, dots, sections = [], {}, 0, set()
class P(HTMLParser):
    def handle_starttag(self, tag, attrs):
        global dots
        a = dict(attrs)
        cls = (a.get("class") or "").split()
        if tag == "section": sections.add(a.get("id"))
        if tag == "g" and "heatmap-row" in cls: rows.append(int(a["data-edge"]))
        if tag == "g" and "block" in cls: blocks[int(a["data-edge"])] = a["data-choice"]
        if tag == "circle" and "path" in cls: dots += 1
P().feed(dom)
ok = True
def expect(cond, what):
    global ok
    print(("ok   " if cond else "FAIL ") + what)
    ok = ok and cond
expect(sorted(rows) == list(range(edges)), f"one heat-map row per edge ({len(rows)} rows, {edges} edges)")
expect(sorted(blocks) == list(range(edges)), f"one block per edge ({len(blocks)} blocks)")
expect(all(blocks.get(e) == c for e, c in enumerate(choices)), "each block is the derived candidate")
expect({"summary", "heatmap", "latency", "training", "network", "pareto"} <= sections, f"every section ({sorted(s for s in sections if s)})")
expect(dots == len(paths) and len(paths) == 8, f"a dot per evaluated path ({dots} dots, {len(paths)} paths: derived, baseline, 6 sampled)")
sys.exit(0 if ok else 1)
PY
dom_rc=$?
cat "$WORK/dom.txt"
check "the rendered DOM has the report's elements" test $dom_rc -eq 0

# ---- the screenshot ---------------------------------------------------------------------------
chrome "$REPORT" "$WORK/shot" --screenshot="$WORK/shot.png"
check "chromium wrote a screenshot" test -s "$WORK/shot.png"
"$PY" - "$WORK/shot.png" "$WORK/run/report.html" "$WORK/run/architecture.json" >"$WORK/png.txt" 2>&1 <<'PY'
import json, re, sys
from PIL import Image
img = Image.open(sys.argv[1]).convert("RGB")
html = open(sys.argv[2]).read()
choices = json.load(open(sys.argv[3]))["choices"]
counts = {}
for c in img.getdata():
    counts[c] = counts.get(c, 0) + 1
def painted(rgb, tol=4, min_pixels=40):
    n = sum(k for c, k in counts.items() if all(abs(a - b) <= tol for a, b in zip(c, rgb)))
    return n >= min_pixels, n
ok = True
white = counts.get((255, 255, 255), 0) / (img.width * img.height)
print(f"{'ok  ' if white < 0.97 else 'FAIL'} not blank ({100 * (1 - white):.1f}% painted, {img.width}x{img.height})")
ok = ok and white < 0.97
# Each derived non-Zero block: its candidate's colour at 0.85 opacity over white.
for e, name in enumerate(choices):
    if name == "Zero":
        continue
    m = re.search(r'data-edge="%d" data-choice="%s"><title>[^<]*</title><rect [^>]*fill="#([0-9a-f]{6})"' % (e, re.escape(name)), html)
    if not m:
        print(f"FAIL block {e} ({name}) not found in the page"); ok = False; continue
    rgb = tuple(int(m.group(1)[i:i + 2], 16) for i in (0, 2, 4))
    blended = tuple(round(0.85 * c + 0.15 * 255) for c in rgb)
    hit, n = painted(blended)
    print(f"{'ok  ' if hit else 'FAIL'} block {e} {name}: {n} pixels of {blended}")
    ok = ok and hit
# The heat map's final distributions: solid candidate colours.
finals = set(re.findall(r'<rect class="final" [^>]*fill="#([0-9a-f]{6})"', html))
for f in sorted(finals):
    rgb = tuple(int(f[i:i + 2], 16) for i in (0, 2, 4))
    hit, n = painted(rgb, tol=2, min_pixels=10)
    print(f"{'ok  ' if hit else 'FAIL'} final-distribution colour #{f}: {n} pixels")
    ok = ok and hit
sys.exit(0 if ok else 1)
PY
png_rc=$?
cat "$WORK/png.txt"
check "the screenshot shows the blocks and the heat map" test $png_rc -eq 0

echo "report_html: $pass passed, $fail failed"
[ "$fail" -eq 0 ]
