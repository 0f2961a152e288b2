#!/usr/bin/env bash
# Builds KernelQuant and runs every test on a fresh Debian machine:
#   scripts/test.sh [BUILD_DIR]
# Installs the Debian packages it needs, configures with warnings as errors,
# builds everything (the CUDA layer too when nvcc is present, so it cannot rot),
# runs the CTest suite, and builds and runs the README's API example.
# The tests are switched on explicitly and CTest fails when it finds none, so a
# build directory configured earlier without tests (scripts/bench.sh uses
# -DKQ_BUILD_TESTS=OFF) cannot pass as "all tests passed".
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${1:-build}"
scripts/install-deps.sh
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKQ_WERROR=ON \
  -DKQ_BUILD_TESTS=ON
cmake --build "$BUILD" -j"$(nproc)"
ctest --test-dir "$BUILD" --output-on-failure --no-tests=error -j"$(nproc)"
ran=0
for ex in "$BUILD"/examples/example_*; do
  [ -x "$ex" ] || continue
  echo "== running $ex"
  "$ex"
  ran=$((ran + 1))
done
if [ "$ran" -eq 0 ]; then
  echo "error: no example program was built in $BUILD/examples" >&2
  exit 1
fi
echo "all tests passed"
