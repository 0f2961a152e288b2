#!/usr/bin/env bash
# Runs one command on the GPU machine with the bundle of scripts/gpu-bundle.sh:
# unpacks .gpu/bundle.tar.xz once into $KQ_GPU_ROOT (default /tmp/kq-gpu), then
# runs the command with bin/ on PATH, lib/ (and the CUDA libraries) on
# LD_LIBRARY_PATH, and KQ_SHARED_DIR=.gpu/shared when that folder was carried.
#   scripts/gpu-run.sh kq info
#   scripts/gpu-run.sh test_gpu --gtest_brief=1
set -euo pipefail
ROOT_DIR="$(cd "$(dirname "$0")/.." && pwd)"
DEST="${KQ_GPU_ROOT:-/tmp/kq-gpu}"
BUNDLE="$ROOT_DIR/.gpu/bundle.tar.xz"
[ -f "$BUNDLE" ] || { echo "gpu-run: $BUNDLE missing (run scripts/gpu-bundle.sh here and carry .gpu)" >&2; exit 2; }
if [ ! -f "$DEST/.stamp" ] || [ "$BUNDLE" -nt "$DEST/.stamp" ]; then
  rm -rf "$DEST" && mkdir -p "$DEST"
  tar -C "$DEST" -xJf "$BUNDLE"
  touch "$DEST/.stamp"
fi
export PATH="$DEST/bin:$PATH"
CUDA_LIB=""
for d in /usr/local/cuda/lib64 /usr/local/cuda/targets/x86_64-linux/lib; do [ -d "$d" ] && CUDA_LIB="$CUDA_LIB:$d"; done
export LD_LIBRARY_PATH="$DEST/lib$CUDA_LIB${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ -d "$ROOT_DIR/.gpu/shared" ] && export KQ_SHARED_DIR="${KQ_SHARED_DIR:-$ROOT_DIR/.gpu/shared}"
export KQ_SOURCE_DIR="${KQ_SOURCE_DIR:-$ROOT_DIR}"  # tests find the repo's models/gpt2-tiny
cd "$ROOT_DIR"
exec "$@"
