#!/usr/bin/env bash
# Installs everything the project needs on Debian 12 (bookworm), from Debian's packages only.
# Idempotent: skips apt-get when every package is already installed. clang and its runtime
# libraries (libFuzzer and the sanitizers) are for scripts/sanitize.sh and scripts/fuzz.sh.
# libturbojpeg0-dev and libpng-dev decode image folders (worker/image_codec), libjpeg62-turbo-dev
# writes the image-folder tests' CMYK JPEG; python3-torchvision is the baseline of
# bench/loader_compare.py.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libtorch-dev prometheus-cpp-dev libjemalloc-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev zlib1g-dev
  libturbojpeg0-dev libjpeg62-turbo-dev libpng-dev
  libopenblas0-pthread
  dataset-fashion-mnist
  prometheus curl python3 openssl
  python3-grpcio python3-protobuf
  python3-torchvision
  python3-onnx
  chromium fonts-dejavu-core python3-pil
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
# Node.js and npm (for ONNX Runtime, below): Debian's, unless the machine already has a node and
# an npm (another vendor's nodejs package ships npm inside it and conflicts with Debian's npm).
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi

# ONNX Runtime for the export test (tests/integration/onnx_test.sh). It is not in Debian 12; npm's
# onnxruntime-node carries its CPU library inside the package (bin/napi-v6/linux/x64, built for
# glibc 2.27, so it loads on Debian 12's 2.36). --ignore-scripts: its install script only fetches
# optional GPU builds from a host outside the registry. Pinned; installed once into a cache folder.
ORT_VERSION=1.23.2
ORT_DIR=${NAS_ORT_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/nas/onnxruntime-node}
ORT_PKG="$ORT_DIR/node_modules/onnxruntime-node/package.json"
if [ -f "$ORT_PKG" ] && grep -q "\"version\": \"$ORT_VERSION\"" "$ORT_PKG"; then
  echo "setup: onnxruntime-node $ORT_VERSION present in $ORT_DIR"
else
  echo "setup: npm install onnxruntime-node@$ORT_VERSION into $ORT_DIR"
  mkdir -p "$ORT_DIR"
  echo '{"private": true}' >"$ORT_DIR/package.json"
  (cd "$ORT_DIR" && npm install --ignore-scripts --no-audit --no-fund --no-save \
    "onnxruntime-node@$ORT_VERSION")
fi
