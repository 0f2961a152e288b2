// Quantized CPU Linear kernels vs the FP32 baseline (make_linear_f32), and the
// 16-bit unquantized Linear (modes bf16 / f16: make_linear_w16):
//   ReadBW/<MB>           streaming read bandwidth of this machine (all threads)
//   GEMV/<mode>/N/K/mem   decode (M = 1), rotating through >= KQ_BENCH_ROTATE_MB
//                         (default 1024) MB of weight copies: a MEMORY figure
//   GEMV/<mode>/N/K/hot   decode on one weight matrix (cache-resident when it
//                         fits in the L2/L3 share: a CACHE figure)
//   GEMM/<mode>/M/N/K     prefill, one weight matrix (compute-bound)
// Environment: KQ_BENCH_ROTATE_MB (rotation set, default 1024), KQ_BENCH_THREADS
// (threads per op, default all), KQ_ISA (kernel ISA, see dispatch.hpp).
// Counters: GB/s = weight bytes read per second (weight_bytes(), everything
// the op holds), bw_frac = GB/s ÷ the ReadBW figure measured at start-up,
// GFLOP/s = 2·M·N·K per second. Context: active ISA, threads, load average,
// read bandwidth. Weights are random (speed does not depend on values).
// Run with (target bench_kernels):
//   flock /tmp/kq-timing.lock build/benchmarks/bench_kernels --benchmark_filter=GEMV/.*/N=2048/K=2048/
//     --benchmark_repetitions=5 --benchmark_report_aggregates_only=true
#include <benchmark/benchmark.h>
#include <omp.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "kernels/cpu/dispatch.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/context.hpp"

namespace {

using kq::Linear;
using kq::Tensor;

int64_t env_int(const char* name, int64_t dflt) {
  const char* v = std::getenv(name);
  return v && *v ? std::atoll(v) : dflt;
}

/// Threads of every op: KQ_BENCH_THREADS, default 0 = all (OpenMP default).
const kq::ExecContext kCtx{kq::Device::CPU, int(env_int("KQ_BENCH_THREADS", 0))};
double g_read_gbps = 0.0;  // measured once in main()

// ---- read bandwidth ------------------------------------------------------------

/// One streaming read of the buffer by all threads (each its contiguous part,
/// QuantKernels::stream_read: the active ISA's widest loads plus a software
/// prefetch, as the kernels read weights); returns seconds.
double read_pass(const uint64_t* p, size_t n, uint64_t* sink) {
  const auto read = kq::cpu::quant_kernels().stream_read;
  const auto t0 = std::chrono::steady_clock::now();
  uint64_t total = 0;
#pragma omp parallel num_threads(kq::resolve_threads(kCtx.threads)) reduction(+ : total)
  {
    const size_t t = size_t(omp_get_thread_num()), nt = size_t(omp_get_num_threads());
    const size_t b = n / nt * t, e = t + 1 == nt ? n : n / nt * (t + 1);
    total += read(p + b, e - b);
  }
  *sink += total;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::vector<uint64_t> filled_buffer(size_t bytes) {
  std::vector<uint64_t> buf(bytes / 8);
#pragma omp parallel for schedule(static)
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = i * 0x9E3779B97F4A7C15ull;
  return buf;
}

/// Median of 7 passes over `mb` MB, in GB/s.
double measure_read_gbps(int64_t mb) {
  const std::vector<uint64_t> buf = filled_buffer(size_t(mb) << 20);
  uint64_t sink = 0;
  read_pass(buf.data(), buf.size(), &sink);
  std::vector<double> gbps;
  for (int i = 0; i < 7; ++i) gbps.push_back(double(buf.size() * 8) / read_pass(buf.data(), buf.size(), &sink) / 1e9);
  std::sort(gbps.begin(), gbps.end());
  benchmark::DoNotOptimize(sink);
  return gbps[3];
}

void BM_ReadBW(benchmark::State& st, int64_t mb) {
  const std::vector<uint64_t> buf = filled_buffer(size_t(mb) << 20);
  uint64_t sink = 0;
  for (auto _ : st) read_pass(buf.data(), buf.size(), &sink);
  benchmark::DoNotOptimize(sink);
  st.counters["GB/s"] = benchmark::Counter(double(buf.size() * 8) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.SetLabel(mb >= 1024 ? "memory" : "cache+memory");
}

// ---- ops ---------------------------------------------------------------------

/// Uniform random F32 [N, K] in ±0.05 (xorshift; fast for large shapes).
Tensor random_weight(int64_t N, int64_t K, uint64_t seed) {
  Tensor w = Tensor::empty(kq::DType::F32, {N, K});
  float* p = w.mutable_data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + uint64_t(n) * 0xBF58476D1CE4E5B9ull + 1;
    for (int64_t k = 0; k < K; ++k) {
      s ^= s << 13;
      s ^= s >> 7;
      s ^= s << 17;
      p[n * K + k] = (float(s >> 40) / float(1 << 24) - 0.5f) * 0.1f;
    }
  }
  return w;
}

std::unique_ptr<Linear> make_op(const std::string& mode, const Tensor& w) {
  if (mode == "fp32") return kq::make_linear_f32(w.clone());
  if (mode == "bf16" || mode == "f16") {
    const kq::DType t = mode == "bf16" ? kq::DType::BF16 : kq::DType::F16;
    Tensor w16 = Tensor::empty(t, w.shape());
    kq::convert_from_f32(t, w.data<float>(), w16.raw_mut(), size_t(w.numel()));
    return kq::make_linear_w16(std::move(w16));
  }
  return kq::quantize_linear(w, Tensor(), kq::parse_quant_mode(mode));
}

/// An independent copy of op (fresh memory for every tensor).
std::unique_ptr<Linear> copy_op(const Linear& op) {
  if (const auto* q = dynamic_cast<const kq::QuantizedLinear*>(&op)) {
    kq::PackedWeight p = q->packed();
    for (Tensor* t : {&p.codes, &p.scales, &p.zeros, &p.dq_codes, &p.dq_scales, &p.dq_mean})
      if (t->defined()) *t = t->clone();
    return kq::make_quantized_linear(std::move(p), Tensor());
  }
  if (const Tensor* w16 = kq::linear_w16_weight(op)) return kq::make_linear_w16(w16->clone());
  return kq::make_linear_f32(op.dequantized_weight().clone());
}

std::vector<float> activations(int64_t n) {
  std::vector<float> x(static_cast<size_t>(n));
  for (int64_t i = 0; i < n; ++i) x[size_t(i)] = float((i * 7919) % 2001 - 1000) * 1e-3f;
  return x;
}

void BM_Gemv(benchmark::State& st, const std::string& mode, int64_t N, int64_t K, bool rotate) {
  std::vector<std::unique_ptr<Linear>> ops;
  ops.push_back(make_op(mode, random_weight(N, K, 1)));
  const size_t bytes = ops[0]->weight_bytes();
  const size_t want = rotate ? size_t(env_int("KQ_BENCH_ROTATE_MB", 1024)) << 20 : 0;
  while (ops.size() * bytes < want) ops.push_back(copy_op(*ops[0]));
  const std::vector<float> x = activations(K);
  std::vector<float> y(static_cast<size_t>(N));
  size_t i = 0;
  for (auto _ : st) {
    ops[i]->forward(x.data(), 1, y.data(), kCtx);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
    i = i + 1 == ops.size() ? 0 : i + 1;
  }
  const double set_mb = double(ops.size() * bytes) / double(1 << 20);
  st.counters["GB/s"] = benchmark::Counter(double(bytes) / 1e9, benchmark::Counter::kIsIterationInvariantRate);
  st.counters["bw_frac"] = benchmark::Counter(double(bytes) / 1e9 / g_read_gbps,
                                              benchmark::Counter::kIsIterationInvariantRate);
  st.counters["MB/op"] = double(bytes) / double(1 << 20);
  st.SetLabel((rotate ? "memory: " : "cache if it fits: ") + std::to_string(int(set_mb)) + " MB rotated, " +
              std::to_string(ops.size()) + " copies");
}

void BM_Gemm(benchmark::State& st, const std::string& mode, int64_t M, int64_t N, int64_t K) {
  const std::unique_ptr<Linear> op = make_op(mode, random_weight(N, K, 2));
  const std::vector<float> x = activations(M * K);
  std::vector<float> y(static_cast<size_t>(M * N));
  for (auto _ : st) {
    op->forward(x.data(), M, y.data(), kCtx);
    benchmark::DoNotOptimize(y.data());
    benchmark::ClobberMemory();
  }
  st.counters["GFLOP/s"] = benchmark::Counter(2.0 * double(M * N * K) / 1e9,
                                              benchmark::Counter::kIsIterationInvariantRate);
}

std::string load_average() {
  std::ifstream f("/proc/loadavg");
  std::string a, b, c;
  f >> a >> b >> c;
  return a + " " + b + " " + c;
}

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  const int64_t rot_mb = env_int("KQ_BENCH_ROTATE_MB", 1024);
  g_read_gbps = measure_read_gbps(std::max<int64_t>(rot_mb, 256));
  benchmark::AddCustomContext("kq_isa", kq::active_isa());
  benchmark::AddCustomContext("kq_threads", std::to_string(kq::resolve_threads(kCtx.threads)));
  benchmark::AddCustomContext("load_average_at_start", load_average());
  benchmark::AddCustomContext("read_bandwidth_GBps", std::to_string(g_read_gbps));

  for (int64_t mb : {int64_t(64), int64_t(1024)})
    benchmark::RegisterBenchmark(("ReadBW/" + std::to_string(mb) + "MB").c_str(), BM_ReadBW, mb)
        ->Unit(benchmark::kMillisecond)
        ->UseRealTime();

  const std::vector<std::string> modes = {"fp32", "bf16",   "f16", "int8",      "int8-wo",       "fp8",
                                          "fp8-e5m2", "fp8-wo", "nf4", "fp4", "int4-g128", "int4-g128-asym"};
  // Square shapes of the issue plus the Llama-3.2-1B MLP projections (up/gate: 8192×2048, down: 2048×8192).
  const std::vector<std::pair<int64_t, int64_t>> gemv_shapes = {{768, 768},   {2048, 2048}, {4096, 4096},
                                                                {5632, 5632}, {8192, 2048}, {2048, 8192}};
  for (const auto& [N, K] : gemv_shapes)
    for (const std::string& m : modes)
      for (bool rotate : {true, false}) {
        const std::string name =
            "GEMV/" + m + "/N=" + std::to_string(N) + "/K=" + std::to_string(K) + (rotate ? "/mem" : "/hot");
        benchmark::RegisterBenchmark(name.c_str(), BM_Gemv, m, N, K, rotate)
            ->Unit(benchmark::kMicrosecond)
            ->UseRealTime();
      }
  // Prefill of 128 tokens on the square shapes and the TinyLlama MLP up/gate shape (N = 5632, K = 2048); fewer
  // tokens at 2048² for the quantized kernels' sgemm thresholds (kQ4SgemmMinM, kFp8SgemmMinM).
  std::vector<std::array<int64_t, 3>> gemm_shapes;  // M, N, K
  for (int64_t S : {int64_t(768), int64_t(2048), int64_t(4096), int64_t(5632)}) gemm_shapes.push_back({128, S, S});
  gemm_shapes.push_back({128, 5632, 2048});
  for (int64_t M : {int64_t(4), int64_t(8), int64_t(16), int64_t(32), int64_t(64), int64_t(80), int64_t(96)})
    gemm_shapes.push_back({M, 2048, 2048});
  for (const auto& [M, N, K] : gemm_shapes)
    for (const std::string& m : modes) {
      const std::string name = "GEMM/" + m + "/M=" + std::to_string(M) + "/N=" + std::to_string(N) +
                               "/K=" + std::to_string(K);
      benchmark::RegisterBenchmark(name.c_str(), BM_Gemm, m, M, N, K)->Unit(benchmark::kMillisecond)->UseRealTime();
    }
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
