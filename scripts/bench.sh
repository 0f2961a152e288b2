#!/usr/bin/env bash
# Builds KernelQuant and runs the main job on a fresh Debian machine:
#   scripts/bench.sh [kq bench options...]
# With no options this quantizes the shipped demo model (models/gpt2-tiny) in
# the specification's four modes (int8 int4 awq fp8) and prints the quality / memory / latency table.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release -DKQ_BUILD_TESTS=OFF >/dev/null
cmake --build build -j"$(nproc)" --target kq_cli
exec ./build/kq bench "$@"
