#!/usr/bin/env bash
# Packs the whole project, built here with CUDA, for the GPU machine (which has
# nvcc, CMake and the CUDA libraries but none of the project's Debian packages).
#
#   scripts/gpu-bundle.sh [--no-build] [--shared "models/llama-small data/text"] [TARGET...]
#
# 1. builds TARGETs (default: kq, every test program, bench_model, bench_gpu_model
#    when it exists) in $KQ_GPU_BUILD (default build-gpu-full: Release,
#    -DKQ_CUDA=ON -DKQ_WERROR=ON);
# 2. writes .gpu/bundle.tar.xz: bin/ (the programs) and lib/ (the shared
#    libraries they load that are not part of glibc, libstdc++ or CUDA: oneDNN,
#    fmt, PCRE2, utf8proc, libgomp, Google Benchmark; xxHash is compiled in
#    header-only, nothing to ship), xz-compressed (oneDNN alone is 40 MB, 7 MB packed);
# 3. with --shared, copies those paths of ../shared (default: models/llama-small
#    and data/text) into .gpu/shared/, uncompressed.
# Everything travels with carry [".gpu"]; the device tool's working-tree limit
# is 64 MiB in all, so pick the shared models a run needs (gpt2-small alone is 29 MB).
#
# On the GPU machine, scripts/gpu-run.sh unpacks the bundle and runs a command
# with PATH, LD_LIBRARY_PATH and KQ_SHARED_DIR set:
#   run(command="scripts/gpu-run.sh test_gpu && scripts/gpu-run.sh kq info", carry=[".gpu"])
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD="${KQ_GPU_BUILD:-build-gpu-full}"
DO_BUILD=1
SHARED_PATHS=""
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --no-build) DO_BUILD=0 ;;
    --shared) SHARED_PATHS="${2:?--shared needs a list of paths under ../shared}"; shift ;;
    -h|--help) sed -n '2,21p' "$0"; exit 0 ;;
    *) TARGETS+=("$1") ;;
  esac
  shift
done

if [ "$DO_BUILD" = 1 ]; then
  [ -f "$BUILD/CMakeCache.txt" ] ||
    cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DKQ_CUDA=ON -DKQ_WERROR=ON >/dev/null
  if [ ${#TARGETS[@]} -eq 0 ]; then
    TARGETS=(kq)
    for t in $(cmake --build "$BUILD" --target help | sed -n 's/^\(test_[a-z_0-9]*\|bench_[a-z_0-9]*\): .*/\1/p'); do
      TARGETS+=("$t")
    done
  fi
  nice cmake --build "$BUILD" -j"$(nproc)" --target "${TARGETS[@]}"
fi

STAGE="$(mktemp -d)"
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE/bin" "$STAGE/lib"
# Every executable the build made (tools, tests, benchmarks, examples).
while IFS= read -r f; do
  cp "$f" "$STAGE/bin/"
done < <(find "$BUILD" -maxdepth 3 -type f -perm -u+x \( -name kq -o -name 'test_*' -o -name 'bench_*' -o -name quickstart \) \
           -not -path '*/CMakeFiles/*' -not -name '*.cmake')
[ -n "$(ls "$STAGE/bin")" ] || { echo "gpu-bundle: no programs found in $BUILD" >&2; exit 1; }
strip --strip-unneeded "$STAGE"/bin/* 2>/dev/null || true  # symbols only: the carried tree is limited to 64 MiB
# Their shared libraries, except glibc / libstdc++ / libgcc / CUDA (present there).
for f in "$STAGE"/bin/*; do
  ldd "$f" 2>/dev/null | awk '/=> \//{print $3}'
done | sort -u | while IFS= read -r lib; do
  case "$(basename "$lib")" in
    libc.so*|libm.so*|libdl.so*|librt.so*|libpthread.so*|ld-linux*|libstdc++*|libgcc_s*|libcuda*|libcublas*|libnv*) ;;
    *) cp -L "$lib" "$STAGE/lib/" ;;
  esac
done
mkdir -p .gpu
tar -C "$STAGE" -cJf .gpu/bundle.tar.xz.tmp bin lib
mv .gpu/bundle.tar.xz.tmp .gpu/bundle.tar.xz

if [ -n "$SHARED_PATHS" ]; then
  rm -rf .gpu/shared
  for p in $SHARED_PATHS; do
    [ -e "../shared/$p" ] || { echo "gpu-bundle: ../shared/$p not found" >&2; exit 1; }
    mkdir -p ".gpu/shared/$(dirname "$p")"
    cp -r "../shared/$p" ".gpu/shared/$p"
  done
fi
echo "gpu-bundle: $(ls "$STAGE/bin" | wc -l) programs, libs: $(ls "$STAGE/lib" | tr '\n' ' ')"
du -sh .gpu/bundle.tar.xz .gpu/shared 2>/dev/null || true
du -sh .gpu
