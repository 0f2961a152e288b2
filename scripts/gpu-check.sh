#!/usr/bin/env bash
# The whole GPU check of the CUDA backend in one call of the device tool.
#
# Here (development machine, no GPU needed), once per change:
#   scripts/gpu-prepare.sh --prebuild   # .gpu/: googletest sources, fmt headers,
#                                       # and prebuilt bin/test_cuda, bin/bench_cuda
# Then through the device tool (kind nvidia-h200):
#   run(command="scripts/gpu-check.sh", carry=[".gpu"], timeout_s=600)
#
# Steps: configure + build the standalone CUDA project (src/kernels/cuda,
# warnings as errors, ptxas reports) in build-gpu/; run the GoogleTest suite
# (test_cuda); run compute-sanitizer memcheck (whole suite) and racecheck (the
# shared-memory GEMV kernels); run the benchmarks (bench_cuda); print a short
# summary last. When .gpu/bin holds prebuilt binaries that run here, tests and
# benchmarks start with them at once while the build runs in the background
# (then the build is only checked to compile cleanly).
# Logs and results go to $OUT (the device tool brings back at most 8 files):
#   env.txt build.log kernels.txt (SASS opcode counts + ncu) tests.log sanitizer.log
#   bench.log bench.csv summary.txt
# Environment knobs: KQ_GPU_SANITIZE=0 (skip compute-sanitizer), KQ_GPU_QUICK=1
# (smaller benchmark), KQ_GPU_NCU=0 (skip the Nsight Compute report of the
# decode GEMVs), KQ_GPU_BUDGET_S (default 540: the sanitizer gets what is left).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/out}"
mkdir -p "$OUT"
BUILD=build-gpu
BUDGET="${KQ_GPU_BUDGET_S:-540}"
START=$SECONDS
status() { printf '%-28s %s\n' "$1" "$2" >>"$OUT/summary.txt"; }
: >"$OUT/summary.txt"

{ nvidia-smi; nvcc --version; cmake --version | head -1; uname -a; } >"$OUT/env.txt" 2>&1
[ -d .gpu/googletest ] || { echo "missing .gpu/ (run scripts/gpu-prepare.sh here and carry .gpu)"; exit 2; }

build() {
  cmake -S src/kernels/cuda -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKQ_WERROR=ON \
    -DKQ_CUDA_PTXAS_VERBOSE=ON -DKQ_GPU_DEPS="$PWD/.gpu" &&
    cmake --build "$BUILD" -j"$(nproc)"
}

TEST_BIN="" BENCH_BIN="" BUILD_PID=""
if [ -x .gpu/bin/test_cuda ] && .gpu/bin/test_cuda --gtest_list_tests >/dev/null 2>&1; then
  TEST_BIN=.gpu/bin/test_cuda BENCH_BIN=.gpu/bin/bench_cuda
  build >"$OUT/build.log" 2>&1 &
  BUILD_PID=$!
  status "binaries" "prebuilt (.gpu/bin), build checked in background"
else
  if build >"$OUT/build.log" 2>&1; then status "build" "ok ($((SECONDS - START)) s)"; else
    status "build" "FAILED (see build.log)"; tail -40 "$OUT/build.log"; cat "$OUT/summary.txt"; exit 1; fi
  TEST_BIN=$BUILD/test_cuda BENCH_BIN=$BUILD/benchmarks/bench_cuda
fi

# Tests.
"$TEST_BIN" --gtest_color=no >"$OUT/tests.log" 2>&1
rc=$?
status "tests" "$([ $rc = 0 ] && echo ok || echo FAILED) ($(grep -E '^\[  PASSED  \]' "$OUT/tests.log" | head -1 | sed 's/\[  PASSED  \] //'); $(grep -cE '^\[  SKIPPED \] [A-Za-z]' "$OUT/tests.log") skipped)"
grep -E '^\[  FAILED  \]|Failure|Expected|Which is|seed=' "$OUT/tests.log" | head -40

# Benchmarks.
bench_args=(--csv "$OUT/bench.csv")
[ "${KQ_GPU_QUICK:-0}" = 1 ] && bench_args+=(--quick)
"$BENCH_BIN" "${bench_args[@]}" >"$OUT/bench.log" 2>&1
status "bench" "$([ $? = 0 ] && echo ok || echo FAILED) ($((SECONDS - START)) s so far)"

# The background build must finish (and compile cleanly) before the sanitizer competes for CPU.
if [ -n "$BUILD_PID" ]; then
  if wait "$BUILD_PID"; then status "build (-Werror)" "ok"; else status "build (-Werror)" "FAILED (see build.log)"; fi
fi

# SASS of the GEMV kernels: which matrix instructions and load widths they use.
SASS_SRC="$BUILD/libkq_kernels_cuda.a"
[ -f "$SASS_SRC" ] || SASS_SRC="$TEST_BIN"
cuobjdump --dump-sass "$SASS_SRC" 2>/dev/null | python3 -c '
import re, sys, collections
fn, counts = None, collections.OrderedDict()
for line in sys.stdin:
    m = re.search(r"Function : (\S+)", line)
    if m:
        fn = m.group(1); counts[fn] = collections.Counter(); continue
    m = re.search(r"/\*[0-9a-f]{4,}\*/\s+(?:@!?U?P\w+\s+)?([A-Z][A-Z0-9_]*(?:\.[A-Z0-9_]+)*)", line)
    if fn and m: counts[fn][m.group(1)] += 1
for fn, c in counts.items():
    if "gemv" not in fn and "dequant" not in fn: continue
    keys = [k for k in c if re.match(r"(HMMA|QMMA|HGMMA|QGMMA|IMMA|LDG|LDS|STS|F2FP|HFMA2|HMUL2|LDL|STL|PRMT)", k)]
    print(fn[:110]); print("   ", ", ".join(f"{k}:{c[k]}" for k in sorted(keys)))
' >"$OUT/kernels.txt" 2>&1
status "sass" "$(grep -c gemv "$OUT/kernels.txt") gemv kernels listed (kernels.txt)"

# Nsight Compute on the decode GEMVs (clocks left alone, as METHOD.md asks).
if [ "${KQ_GPU_NCU:-1}" = 1 ] && command -v ncu >/dev/null; then
  timeout 120 ncu --clock-control none --kernel-name regex:gemv --launch-skip 1 --launch-count 12 \
    --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \
    "$BENCH_BIN" --profile >>"$OUT/kernels.txt" 2>&1
  status "ncu" "rc=$? (kernels.txt)"
fi

# compute-sanitizer with the time that is left.
if [ "${KQ_GPU_SANITIZE:-1}" = 1 ] && command -v compute-sanitizer >/dev/null; then
  left=$((BUDGET - (SECONDS - START)))
  if [ $left -gt 60 ]; then
    t1=$((left * 2 / 3)) t2=$((left / 3 - 10))
    timeout "$t1" compute-sanitizer --tool memcheck --error-exitcode 3 "$TEST_BIN" --gtest_color=no \
      --gtest_filter='-*EveryLaunchVariant*' >"$OUT/sanitizer.log" 2>&1
    rc=$?
    status "memcheck" "$(case $rc in 0) echo 'ok, no errors';; 124) echo "timed out after ${t1}s";; 3) echo ERRORS;; *) echo "rc=$rc";; esac) ($(grep -E 'ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
    timeout "$t2" compute-sanitizer --tool racecheck --error-exitcode 3 "$TEST_BIN" --gtest_color=no \
      --gtest_filter='*W4A16.Gemv*:*Fp8Linear*Gemv*:*EveryLaunchVariant*nf4*' >>"$OUT/sanitizer.log" 2>&1
    rc=$?
    status "racecheck" "$(case $rc in 0) echo 'ok, no hazards';; 124) echo "timed out after ${t2}s";; 3) echo HAZARDS;; *) echo "rc=$rc";; esac) ($(grep -E 'RACECHECK SUMMARY|ERROR SUMMARY' "$OUT/sanitizer.log" | tail -1))"
  else
    status "compute-sanitizer" "skipped (no time left)"
  fi
else
  status "compute-sanitizer" "skipped"
fi

echo "================ bench ================"
grep -vE '^device' "$OUT/bench.log" | cut -c1-110
echo "================ summary ================"
head -1 "$OUT/bench.log"
cat "$OUT/summary.txt"
echo "total $((SECONDS - START)) s"
