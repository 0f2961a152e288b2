// FP32 GEMM/GEMV throughput of the FP32 Linear (the unquantized baseline).
//   bench_fp32 [--benchmark_filter=...]      threads: KQ_THREADS (default: all cores)
// GEMM reports FLOP/s (2·M·N·K per call); GEMV reports weight bytes/s, since
// batch-1 decode is bound by reading the weights.
#include <benchmark/benchmark.h>

#include <cstdlib>
#include <random>
#include <vector>

#include "kernels/cpu/linear_f32_kernels.hpp"
#include "kernels/linear_f32.hpp"

namespace {

int threads() {
  const char* t = std::getenv("KQ_THREADS");
  return t ? std::atoi(t) : 0;
}

kq::Tensor random_tensor(kq::Shape shape, uint32_t seed) {
  kq::Tensor t = kq::Tensor::empty(kq::DType::F32, std::move(shape));
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(-1.0f, 1.0f);
  float* p = t.mutable_data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) p[i] = u(rng);
  return t;
}

// Linear forward, y[M,N] = x[M,K]·Wᵀ: args M, N, K.
void BM_LinearF32(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  auto op = kq::make_linear_f32(random_tensor({N, K}, 1));
  const kq::Tensor x = random_tensor({M, K}, 2);
  std::vector<float> y(static_cast<size_t>(M * N));
  const kq::ExecContext ctx{kq::Device::CPU, threads()};
  for (auto _ : state) {
    op->forward(x.data<float>(), M, y.data(), ctx);
    benchmark::DoNotOptimize(y.data());
  }
  state.counters["FLOP/s"] =
      benchmark::Counter(2.0 * double(M * N * K), benchmark::Counter::kIsIterationInvariantRate);
  state.counters["threads"] = kq::resolve_threads(threads());
}
BENCHMARK(BM_LinearF32)
    ->Args({2048, 2048, 2048})  // the GEMM headline number
    ->Args({128, 2048, 5632})   // Llama-1B MLP down_proj prefill, 128 tokens
    ->Args({128, 768, 768})     // GPT-2 124M attention projection prefill
    ->Args({1, 5632, 2048})     // decode GEMV
    ->Unit(benchmark::kMillisecond)
    ->UseRealTime();

// Decode GEMV y[N] = W[N,K]·x through oneDNN sgemm (M = 1) or the AVX2 row-dot
// kernel: args N, K, kernel (0 = dnnl_sgemm, 1 = AVX2).
void BM_GemvF32(benchmark::State& state) {
  const int64_t N = state.range(0), K = state.range(1);
  const bool avx2 = state.range(2) == 1;
  if (avx2 && !kq::cpu::gemv_f32_avx2_supported()) {
    state.SkipWithError("CPU without AVX2+FMA");
    return;
  }
  const kq::Tensor w = random_tensor({N, K}, 3), x = random_tensor({1, K}, 4);
  std::vector<float> y(static_cast<size_t>(N));
  const int nt = kq::resolve_threads(threads());
  for (auto _ : state) {
    if (avx2)
      kq::cpu::gemv_f32_avx2(w.data<float>(), N, K, x.data<float>(), y.data(), nt);
    else
      kq::cpu::gemm_f32_dnnl(x.data<float>(), 1, w.data<float>(), N, K, y.data(), nt);
    benchmark::DoNotOptimize(y.data());
  }
  state.SetLabel(avx2 ? "avx2 row-dot" : "dnnl_sgemm");
  state.counters["bytes/s"] =
      benchmark::Counter(4.0 * double(N * K), benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_GemvF32)
    ->ArgsProduct({{5632}, {2048}, {0, 1}})
    ->ArgsProduct({{2048}, {5632}, {0, 1}})
    ->ArgsProduct({{2048}, {2048}, {0, 1}})
    ->ArgsProduct({{2304}, {768}, {0, 1}})
    ->ArgsProduct({{688}, {256}, {0, 1}})
    ->Unit(benchmark::kMicrosecond)
    ->UseRealTime();

}  // namespace

BENCHMARK_MAIN();
