#!/usr/bin/env bash
# The CPU kernels of every ISA this machine has, on the device machine (its
# CPU has AVX-512 VNNI; the dev VM and CI do not, so the kernel tests'
# avx512vnni instantiations run only there), in one call of the device tool
# with the bundle of scripts/gpu-bundle.sh (which carries test_kernels,
# bench_kernels and bench_model):
#   run: scripts/cpu-isa-check.sh      carry: [".gpu/bundle.tar.xz"]
# Prints the kernel tests' result, then KQ_ISA=avx2 against avx512vnni on 2
# pinned cores: 4096² GEMV from memory and 128 x 2048² GEMM (bench_kernels),
# and the Llama 1B shape's decode / prefill (bench_model), one ISA after the
# other in the same call. KQ_CPU_MODES (default nf4,int4-g128) picks the
# bench_model modes.
set -uo pipefail
cd "$(dirname "$0")/.."
R=scripts/gpu-run.sh
lscpu | grep -E "Model name"
echo "== test_kernels"
$R test_kernels --gtest_brief=1 2>&1 | tail -4
export KQ_BENCH_THREADS=2
F='GEMV/(fp32|bf16|nf4|int4-g128)/N=4096/K=4096/mem|GEMM/(fp32|bf16|nf4|int4-g128)/M=128/N=2048/K=2048'
for isa in avx2 avx512vnni; do
  echo "== bench_kernels, KQ_ISA=$isa"
  KQ_ISA=$isa taskset -c 0,1 $R bench_kernels --benchmark_filter="$F" --benchmark_repetitions=3 \
    --benchmark_report_aggregates_only=true 2>&1 | grep -E "median"
done
for isa in avx2 avx512vnni; do
  echo "== bench_model llama_1b, KQ_ISA=$isa"
  KQ_ISA=$isa KQ_THREADS=2 timeout 300 taskset -c 0,1 $R bench_model --quant_table=llama_1b --runs=2 --decode=8 \
    --modes="${KQ_CPU_MODES:-nf4,int4-g128}" 2>&1 | tail -8
done
