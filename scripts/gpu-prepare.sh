#!/usr/bin/env bash
# Fills .gpu/ (git-ignored) with what the standalone GPU check needs but the
# GPU machine lacks: GoogleTest sources (Debian's /usr/src/googletest) and the
# {fmt} headers (used header-only). Run here, on the development machine,
# before scripts/gpu-check.sh is run through the device tool with carry [".gpu"].
#   scripts/gpu-prepare.sh              # sources only: the GPU machine builds everything
#   scripts/gpu-prepare.sh --prebuild   # also build test_cuda / bench_cuda here (build-gpu-host/)
#                                       # into .gpu/bin, so the check starts at once there
set -euo pipefail
cd "$(dirname "$0")/.."
[ -d /usr/src/googletest/googletest ] || { echo "missing /usr/src/googletest (apt-get install googletest)" >&2; exit 1; }
[ -f /usr/include/fmt/format.h ] || { echo "missing /usr/include/fmt (apt-get install libfmt-dev)" >&2; exit 1; }
# Only this script's parts of .gpu/ are replaced (scripts/gpu-bundle.sh keeps
# its bundle there too).
rm -rf .gpu/googletest .gpu/include .gpu/bin
mkdir -p .gpu/include
cp -r /usr/src/googletest .gpu/googletest
rm -rf .gpu/googletest/googlemock/test .gpu/googletest/googletest/test .gpu/googletest/googletest/samples
cp -r /usr/include/fmt .gpu/include/fmt
if [ "${1:-}" = "--prebuild" ]; then
  cmake -S src/kernels/cuda -B build-gpu-host -G Ninja -DCMAKE_BUILD_TYPE=Release -DKQ_WERROR=ON \
    -DKQ_GPU_DEPS="$PWD/.gpu" >/dev/null
  cmake --build build-gpu-host -j"$(nproc)" | grep -vE '^\[' || true
  mkdir -p .gpu/bin
  cp build-gpu-host/test_cuda build-gpu-host/benchmarks/bench_cuda .gpu/bin/
fi
du -sh .gpu
