#!/usr/bin/env bash
# Builds KernelQuant and runs every test on a fresh Debian machine:
#   scripts/test.sh [BUILD_DIR]
# Installs the Debian packages it needs, configures with warnings as errors,
# builds everything (the CUDA layer too when nvcc is present, so it cannot rot),
# runs the CTest suite, and builds and runs the README's API example.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
scripts/install-deps.sh
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKQ_WERROR=ON
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure -j"$(nproc)"
for ex in "$BUILD"/examples/example_*; do
  [ -x "$ex" ] || continue
  echo "== running $ex"
  "$ex"
done
echo "all tests passed"
