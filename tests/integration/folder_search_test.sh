#!/usr/bin/env bash
# A tiny search on an image folder (issue 22): writes an ImageNet-layout folder (train/ and val/,
# one sub-folder per class) of real JPEG and PNG files from Fashion-MNIST test images - colour,
# upscaled to 56x42, some grey - with Debian's python3-pil, then `nas search --dataset folder`
# on the fashion-mnist space (28x28x1: every image decoded to luma, resized and centre-cropped).
# Then the same search streaming the folder (--stream_images: batches decoded as the steps ask,
# the splits kept as file lists), in one process and through the distributed service (one
# worker). Also: a corrupt file is an error naming it (in memory and streamed) or, with
# --skip_bad_files, is left out, named in the log and counted in report.json; and --dataset
# folder without --data_dir names it.
# Usage: folder_search_test.sh NAS_BINARY      (skips with 77 without python3-pil or the data)
set -u
NAS=${1:?usage: folder_search_test.sh NAS_BINARY}
PY=/usr/bin/python3
[ -x "$PY" ] || PY=python3
if ! "$PY" -c 'import PIL' 2>/dev/null; then
  echo "SKIP: python3-pil is not installed (scripts/setup.sh installs it with python3-torchvision)"
  exit 77
fi
SRC=/usr/share/datasets/fashion-mnist
if [ ! -f "$SRC/t10k-images-idx3-ubyte.gz" ]; then
  echo "SKIP: $SRC is missing (dataset-fashion-mnist)"
  exit 77
fi
# WORK (removed at exit), pass/fail and check.
source "$(dirname "$0")/lib.sh"

# 40 training and 6 validation images per class; classes named so that sorted order differs
# from label order.
"$PY" - "$SRC" "$WORK/folder" <<'PY'
import gzip, os, sys
from PIL import Image
src, out = sys.argv[1], sys.argv[2]
names = ["tshirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag",
         "boot"]
images = gzip.open(f"{src}/t10k-images-idx3-ubyte.gz").read()[16:]
labels = gzip.open(f"{src}/t10k-labels-idx1-ubyte.gz").read()[8:]
count = [0] * 10
for i, label in enumerate(labels):
    k = count[label]
    if k >= 46:
        continue
    count[label] += 1
    grey = Image.frombytes("L", (28, 28), images[i * 784:(i + 1) * 784])
    split = "train" if k < 40 else "val"
    d = f"{out}/{split}/{names[label]}"
    os.makedirs(d, exist_ok=True)
    if k % 3 == 0:
        grey.save(f"{d}/{i}.png")
    else:
        z = Image.new("L", (28, 28), 0)
        rgb = Image.merge("RGB", (grey, grey, z) if k % 3 == 1 else (z, grey, grey))
        rgb.resize((56, 42), Image.BILINEAR).save(f"{d}/{i}.jpg", quality=92)
PY
check "folder written (460 files)" test "$(find "$WORK/folder" -type f | wc -l)" -eq 460

TINY=(--space fashion-mnist --valid_size 50 --warmup_epochs 1 --search_epochs 1 --train_epochs 1
      --batch_size 25 --arch_every 2 --threads 1 --progress=false --cache_dir "$WORK/cache"
      --profile_repeats 6)
"$NAS" search --dataset folder --data_dir "$WORK/folder" "${TINY[@]}" --out "$WORK/run" \
  >"$WORK/search.log" 2>&1
rc=$?
check "nas search --dataset folder exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -20 "$WORK/search.log"
for f in architecture.json derived.pt derived.onnx report.json; do
  check "the search wrote $f" test -s "$WORK/run/$f"
done
check "the search read 400 training (350 + 50 for validation) and 60 test images" \
  grep -q "folder: 350 train / 50 valid / 60 test" "$WORK/search.log"
check "report.json says dataset folder" grep -q '"dataset": "folder"' "$WORK/run/report.json"

check "report.json says the images were held in memory" grep -q '"streamed": false' "$WORK/run/report.json"

# Streamed: the same splits (the same counts), batches decoded during the search.
"$NAS" search --dataset folder --data_dir "$WORK/folder" --stream_images "${TINY[@]}" \
  --out "$WORK/stream" >"$WORK/stream.log" 2>&1
rc=$?
check "nas search --stream_images exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -20 "$WORK/stream.log"
for f in architecture.json derived.pt derived.onnx report.json report.html; do
  check "the streamed search wrote $f" test -s "$WORK/stream/$f"
done
check "the streamed search drew the same splits" \
  grep -q "folder: 350 train / 50 valid / 60 test (400 for final training), streamed" \
  "$WORK/stream.log"
check "report.json says streamed" grep -q '"streamed": true' "$WORK/stream/report.json"
check "report.json times the steps' wait for batches" grep -q '"data_wait":' "$WORK/stream/report.json"

# Streamed through the distributed service: one local worker reads the folder the same way.
"$NAS" search --dataset folder --data_dir "$WORK/folder" --stream_images "${TINY[@]}" \
  --workers 1 --out "$WORK/dist" >"$WORK/dist.log" 2>&1
rc=$?
check "nas search --workers 1 --stream_images exits 0" test $rc -eq 0
[ $rc -eq 0 ] || tail -20 "$WORK/dist.log"
check "the distributed streamed search wrote derived.onnx" test -s "$WORK/dist/derived.onnx"
check "its worker streamed the folder" \
  grep -q "350 train / 50 valid / 60 test (400 for final training), streamed" \
  "$WORK/dist/logs/worker-0.log"

# A corrupt file: the search stops with its name, in memory and streamed.
bad="$WORK/folder/train/bag/corrupt.jpg"
head -c 300 "$(find "$WORK/folder/train/bag" -name '*.jpg' | head -1)" >"$bad"
msg=$("$NAS" search --dataset folder --data_dir "$WORK/folder" "${TINY[@]}" \
  --out "$WORK/run2" 2>&1)
rc=$?
check "a corrupt file fails the search" test $rc -ne 0
check "the error names the corrupt file" grep -q "corrupt.jpg" <<<"$msg"
msg=$("$NAS" search --dataset folder --data_dir "$WORK/folder" --stream_images "${TINY[@]}" \
  --out "$WORK/run4" 2>&1)
rc=$?
check "a corrupt file fails the streamed search" test $rc -ne 0
check "the streamed error names the corrupt file" grep -q "corrupt.jpg" <<<"$msg"
# --skip_bad_files: left out, named, counted.
for mode in memory stream; do
  extra=()
  [ $mode = stream ] && extra=(--stream_images)
  "$NAS" search --dataset folder --data_dir "$WORK/folder" --skip_bad_files "${extra[@]}" \
    "${TINY[@]}" --out "$WORK/skip-$mode" >"$WORK/skip-$mode.log" 2>&1
  rc=$?
  check "--skip_bad_files ($mode): the search exits 0" test $rc -eq 0
  [ $rc -eq 0 ] || tail -20 "$WORK/skip-$mode.log"
  check "--skip_bad_files ($mode): the log names the skipped file" \
    grep -q "skipped .*corrupt.jpg" "$WORK/skip-$mode.log"
  check "--skip_bad_files ($mode): report.json counts it" \
    grep -Eq '"bad_files_skipped": [1-9]' "$WORK/skip-$mode/report.json"
done
rm -f "$bad"

msg=$("$NAS" search --dataset folder "${TINY[@]}" --out "$WORK/run3" 2>&1)
check "--dataset folder without --data_dir is refused naming data_dir" grep -q "data_dir" <<<"$msg"

# The README's small space at 96x96: the cifar10 preset's JSON, edited, loads.
"$NAS" spaces --print cifar10 >"$WORK/cifar10.json"
check "nas spaces --print cifar10 exits 0" test $? -eq 0
"$PY" -c 'import json, sys; s = json.load(open(sys.argv[1])); s["name"] = "lab96"
s["input"].update(height=96, width=96); s["stem"]["stride"] = 2
json.dump(s, open(sys.argv[2], "w"))' "$WORK/cifar10.json" "$WORK/lab96.json"
check "the edited 96x96 space loads" grep -q '"height": *96' <("$NAS" spaces --print "$WORK/lab96.json")

echo "folder_search_test: $pass passed, $fail failed"
[ $fail -eq 0 ]
