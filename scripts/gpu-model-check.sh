#!/usr/bin/env bash
# Whole-model GPU check in one call of the device tool (issue: `--device cuda`).
#
# Here (no GPU needed):
#   scripts/gpu-bundle.sh --shared "models/gpt2-small models/llama-small data/text/wikitext-2-test.txt" \
#       kq test_models test_gpu test_cuda bench_gpu_model
# Then:
#   run(command="scripts/gpu-model-check.sh", carry=[".gpu"], timeout_s=600)
#
# Runs, with logs in $OUT: the GPU tests (test_gpu: every Linear format on the
# device; test_cuda: model ops and kernels; test_models: GPU model tests with
# KQ_REQUIRE_CUDA=1 so a missing device fails), the Llama-7B-shape benchmark
# (bench_gpu_model: BF16 / FP8 / INT8 / NF4 / INT4-g128 / AWQ, batch 1 and 16,
# 512-token prefill, GPU memory), perplexity on the GPU against the CPU FP32
# perplexity of the same windows (kq eval), and `kq bench --device cuda`.
# Knobs: KQ_SAMPLES (windows for the perplexity runs, default 40),
# KQ_BENCH_RUNS (default 3), KQ_BENCH_MODES (bench_gpu_model --modes), KQ_SKIP_TESTS=1.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-$PWD/build-gpu/out}"
mkdir -p "$OUT"
R=scripts/gpu-run.sh
S="${KQ_SAMPLES:-40}"
RUNS="${KQ_BENCH_RUNS:-3}"
SUM="$OUT/summary.txt"
: >"$SUM"
note() { printf '%s\n' "$*" | tee -a "$SUM"; }
T=.gpu/shared/data/text/wikitext-2-test.txt
V=.gpu/shared/data/text/wikitext-2-valid.txt

$R kq info >"$OUT/tests.log" 2>&1
note "== $(grep -E '^GPU:' "$OUT/tests.log")"

if [ "${KQ_SKIP_TESTS:-0}" != 1 ]; then
  {
    $R test_gpu --gtest_brief=1; echo "test_gpu rc=$?"
    $R test_cuda --gtest_brief=1; echo "test_cuda rc=$?"
    # the decode attention's workspace + combine path, which Hopper's clusters replace
    KQ_ATTN_CLUSTER=0 $R test_cuda --gtest_brief=1 --gtest_filter='ModelOps.*Attention*'; echo "test_cuda(no clusters) rc=$?"
    KQ_REQUIRE_CUDA=1 $R test_models --gtest_brief=1 --gtest_filter='ModelCuda*'; echo "test_models(GPU) rc=$?"
    # the CPU kernels too: this machine's CPU runs the AVX-512 instantiations that CI cannot
    $R test_kernels --gtest_brief=1; echo "test_kernels(CPU) rc=$?"
  } >>"$OUT/tests.log" 2>&1
  grep -E 'rc=|PASSED|FAILED|tests ran' "$OUT/tests.log" | tee -a "$SUM"
fi

# Llama-7B shape: every mode resident, interleaved runs.
$R bench_gpu_model --shape=llama-7b --runs="$RUNS" --decode=32 --prompt=512 --batch=16 \
  --modes="${KQ_BENCH_MODES:-bf16,fp8,int8,nf4,int4-g128,awq}" \
  --json="$OUT/bench7b.json" >"$OUT/bench7b.txt" 2>&1
note "bench_gpu_model rc=$?"
cat "$OUT/bench7b.txt" | tee -a "$SUM"

# Perplexity: CPU FP32 vs GPU BF16 on the same windows, then the quantized modes on the GPU.
{
  for m in gpt2-small llama-small; do
    [ -d ".gpu/shared/models/$m" ] || continue
    for d in cpu cuda; do
      printf '%s %s: ' "$m" "$d"
      $R kq eval --model ".gpu/shared/models/$m" --text "$T" --samples "$S" --device "$d" --quiet |
        grep -E '^perplexity' | tr -s ' '
    done
    $R kq bench --model ".gpu/shared/models/$m" --text "$T" --samples "$S" --device cuda \
      --modes int8 int4 fp8 int4-g128 --json "$OUT/bench-$m.json"
    echo "kq bench $m rc=$?"
    # AWQ: quantized on the CPU (calibration WikiText-2 valid), the folder
    # evaluated on the CPU and on the GPU on the same windows.
    if [ -f "$V" ]; then
      q="${TMPDIR:-/tmp}/kq-awq-$m"
      rm -rf "$q"
      $R kq quantize --model ".gpu/shared/models/$m" --mode awq --calibration "$V" --out "$q" >/dev/null
      echo "kq quantize awq $m rc=$?"
      for d in cpu cuda; do
        printf '%s awq %s: ' "$m" "$d"
        $R kq eval --model "$q" --text "$T" --samples "$S" --device "$d" --quiet | grep -E '^perplexity' | tr -s ' '
      done
    fi
  done
} >"$OUT/ppl.txt" 2>/tmp/kq-ppl.err
tail -5 /tmp/kq-ppl.err >>"$OUT/ppl.txt"
cat "$OUT/ppl.txt" >>"$SUM"
echo "---- summary ----"
cat "$SUM"
