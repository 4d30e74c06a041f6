#!/usr/bin/env bash
# Installs everything the project needs on Debian 12 (bookworm), from Debian's packages only.
# Idempotent: skips apt-get when every package is already installed. clang and its runtime
# libraries (libFuzzer and the sanitizers) are for scripts/sanitize.sh and scripts/fuzz.sh.
# libturbojpeg0-dev and libpng-dev decode image folders (worker/image_codec); python3-torchvision
# is the baseline of bench/loader_compare.py.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev librocksdb-dev libtorch-dev prometheus-cpp-dev libjemalloc-dev
  libgtest-dev libgmock-dev nlohmann-json3-dev zlib1g-dev
  libturbojpeg0-dev libpng-dev
  libopenblas0-pthread
  dataset-fashion-mnist
  prometheus curl python3 openssl
  python3-grpcio python3-protobuf
  python3-torchvision
  clang libclang-rt-14-dev
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
  $SUDO apt-get update -q
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -q --no-install-recommends "${missing[@]}"
else
  echo "setup: all packages present"
fi
