#!/usr/bin/env bash
# Where a decode step's time goes on the GPU: Nsight Compute kernel durations
# of a few eager (no CUDA graph) decode steps of the Llama-7B shape, summed by
# kernel name, against the step time bench_gpu_model measures with graphs.
#
#   run(command="scripts/gpu-decode-profile.sh bf16 nf4", carry=[".gpu/bundle.tar.xz"])
#
# Needs the bundle (scripts/gpu-bundle.sh ... bench_gpu_model). Prints, per
# mode: kernels per step, the sum of their durations (us), and the top kernels.
# The gap between the graph-replayed step time and the kernel sum is launch
# gaps and tails inside the graph.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/out}"
mkdir -p "$OUT"
R=scripts/gpu-run.sh
NCU=$(command -v ncu || ls /opt/nvidia/nsight-compute/*/ncu 2>/dev/null | head -1)
[ -n "$NCU" ] || { echo "ncu not found"; exit 2; }
for mode in "${@:-bf16}"; do
  # prompt 4 + 3 decode steps, batch 1 only; the last decode step's kernels are summed.
  timeout 240 $R "$NCU" --clock-control none --metrics gpu__time_duration.sum --csv \
    bench_gpu_model --shape=llama-7b --modes="$mode" --runs=1 --prompt=4 --decode=3 --batch=1 --no-graphs \
    >"$OUT/ncu-$mode.csv" 2>"$OUT/ncu-$mode.err"
  echo "ncu $mode rc=$?"
  python3 - "$OUT/ncu-$mode.csv" "$mode" <<'PY'
import csv, sys, collections
rows = [r for r in csv.reader(open(sys.argv[1])) if len(r) > 10]
if not rows: print("no ncu rows"); sys.exit()
h = rows[0]; ki = h.index("Kernel Name"); vi = h.index("Metric Value"); ui = h.index("Metric Unit"); ii = h.index("ID")
ks = []
for r in rows[1:]:
    v = float(r[vi].replace(",", "")); u = r[ui]
    us = v / 1000 if u == "nsecond" else (v if u == "usecond" else v * 1000)
    ks.append((r[ki], us))
# A decode step starts at an embedding kernel; take the last complete step.
starts = [i for i, (n, _) in enumerate(ks) if "embed" in n]
if len(starts) < 2: print("could not find decode steps"); sys.exit()
step = ks[starts[-2]:starts[-1]]
tot = sum(us for _, us in step)
by = collections.defaultdict(lambda: [0, 0.0])
for n, us in step:
    k = n.split("(")[0][:70]; by[k][0] += 1; by[k][1] += us
print(f"{sys.argv[2]}: {len(step)} kernels per decode step, kernel time {tot:.0f} us")
for k, (c, us) in sorted(by.items(), key=lambda kv: -kv[1][1])[:14]:
    print(f"  {us:8.0f} us {100*us/tot:5.1f} %  x{c:<4d} {k}")
PY
done
