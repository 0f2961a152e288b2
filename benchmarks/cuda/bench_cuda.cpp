// bench_cuda: GPU kernel benchmarks for the CUDA backend.
//
//   bench_cuda [--csv FILE] [--quick] [--profile] [--w4] [--w4gemv] [--gemv] [--l2-resident]
//
// --w4: only the copy ceiling and the W4A16 kernels (decode GEMVs on all 7B
// shapes with launch variants, prefill fused vs dequantize + cuBLASLt).
// --w4gemv: as --w4 without the prefill benchmarks.
// --gemv: only the copy ceiling and every decode GEMV (BF16, W4A16, FP8, INT8)
// on the two FFN shapes: no GEMMs, no prefill.
//
// Method (the device tool's METHOD.md): CUDA events after warm-up, median of
// many repetitions; random operands generated on the device (never zeros);
// decode GEMVs rotate through enough weight copies to exceed the L2 several
// times and are timed as CUDA-graph replays (many launches per replay), so
// launch gaps do not count. Ceilings are measured in the same run: a large
// device-to-device copy (bytes read + written) and the BF16 GEMM.
// GEMV bandwidth counts every byte the kernel must move once: codes, scales,
// zero points, activations and outputs. --profile only launches the decode
// GEMVs (M = 1 and 16) a few times (for ncu).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <functional>
#include <string>
#include <tuple>
#include <vector>

#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/fp8_gemv.hpp"
#include "kernels/cuda/gemm_lt.hpp"
#include "kernels/cuda/gpu_context.hpp"
#include "kernels/cuda/random_fill.hpp"
#include "kernels/cuda/w4a16.hpp"
#include "kernels/cuda/w8a8.hpp"
#include "kernels/cuda/w8a8_kernels.hpp"

namespace {

using namespace kq::cuda;

struct Row {
  std::string name, shape;
  double us;        // median time per call, microseconds
  double value;     // TFLOP/s or GB/s
  std::string unit;
  std::string note;
};
std::vector<Row> g_rows;

void report(const Row& r) {
  std::printf("%-34s %-22s %10.2f us %9.1f %-7s %s\n", r.name.c_str(), r.shape.c_str(), r.us, r.value, r.unit.c_str(),
              r.note.c_str());
  std::fflush(stdout);
  g_rows.push_back(r);
}

class Events {
 public:
  Events() {
    KQ_CUDA_CHECK(cudaEventCreate(&a_));
    KQ_CUDA_CHECK(cudaEventCreate(&b_));
  }
  ~Events() {
    cudaEventDestroy(a_);
    cudaEventDestroy(b_);
  }
  /// Median milliseconds of `reps` timed calls of f on stream s (after `warmup` calls).
  double median_ms(const std::function<void()>& f, cudaStream_t s, int warmup, int reps) {
    for (int i = 0; i < warmup; ++i) f();
    KQ_CUDA_CHECK(cudaStreamSynchronize(s));
    std::vector<float> t(static_cast<size_t>(reps));
    for (auto& v : t) {
      KQ_CUDA_CHECK(cudaEventRecord(a_, s));
      f();
      KQ_CUDA_CHECK(cudaEventRecord(b_, s));
      KQ_CUDA_CHECK(cudaEventSynchronize(b_));
      KQ_CUDA_CHECK(cudaEventElapsedTime(&v, a_, b_));
    }
    std::nth_element(t.begin(), t.begin() + reps / 2, t.end());
    return double(t[size_t(reps / 2)]);
  }
  /// Median milliseconds per launch: `launches` calls f(i) captured in one CUDA
  /// graph, replayed `reps` times.
  double graph_ms(const std::function<void(int)>& f, cudaStream_t s, int launches, int reps) {
    f(0);  // warm-up outside capture: lazy plans, attributes, scratch
    KQ_CUDA_CHECK(cudaStreamSynchronize(s));
    cudaGraph_t g = nullptr;
    cudaGraphExec_t ge = nullptr;
    KQ_CUDA_CHECK(cudaStreamBeginCapture(s, cudaStreamCaptureModeThreadLocal));
    for (int i = 0; i < launches; ++i) f(i);
    KQ_CUDA_CHECK(cudaStreamEndCapture(s, &g));
    KQ_CUDA_CHECK(cudaGraphInstantiate(&ge, g, 0));
    const double ms = median_ms([&] { KQ_CUDA_CHECK(cudaGraphLaunch(ge, s)); }, s, 2, reps);
    cudaGraphExecDestroy(ge);
    cudaGraphDestroy(g);
    return ms / launches;
  }

 private:
  cudaEvent_t a_ = nullptr, b_ = nullptr;
};

std::string shape3(int64_t M, int64_t N, int64_t K) {
  return std::to_string(M) + "x" + std::to_string(N) + "x" + std::to_string(K);
}

double g_copy_gbs = 0.0;
double g_bf16_tflops = 0.0;

void bench_copy(Events& ev, cudaStream_t s) {
  const size_t bytes = size_t(2) << 30;
  DeviceBuffer<std::byte> a(bytes), b(bytes);
  KQ_CUDA_CHECK(cudaMemsetAsync(a.data(), 0x5A, bytes, s));
  const double ms = ev.median_ms([&] { KQ_CUDA_CHECK(cudaMemcpyAsync(b.data(), a.data(), bytes, cudaMemcpyDeviceToDevice, s)); },
                                 s, 3, 20);
  g_copy_gbs = 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
  report({"copy D2D (read+write)", "2 GiB", ms * 1e3, g_copy_gbs, "GB/s", "bandwidth ceiling"});
}

void bench_gemms(Events& ev, GpuContext& ctx, int64_t S, bool quick) {
  const cudaStream_t s = ctx.stream();
  const int reps = quick ? 5 : 20;
  const double flop = 2.0 * double(S) * double(S) * double(S);
  const std::string shape = shape3(S, S, S);
  auto tflops = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
  {
    DeviceBuffer<uint16_t> x(size_t(S * S)), w(size_t(S * S)), y(size_t(S * S));
    fill_random_bf16(x.data(), x.size(), 1, 1.0f, s);
    fill_random_bf16(w.data(), w.size(), 2, 1.0f, s);
    const double ms = ev.median_ms([&] { gemm_bf16(ctx, x.data(), S, w.data(), S, y.data(), S, S, S, S); }, s, 3, reps);
    g_bf16_tflops = tflops(ms);
    report({"gemm bf16 (cuBLASLt)", shape, ms * 1e3, g_bf16_tflops, "TFLOP/s", "baseline"});
  }
  auto vs_bf16 = [&](double t) {
    char b[64];
    std::snprintf(b, sizeof b, "%.2fx bf16", t / g_bf16_tflops);
    return std::string(b);
  };
  {
    DeviceBuffer<uint8_t> x(size_t(S * S)), w(size_t(S * S));
    DeviceBuffer<uint16_t> y(size_t(S * S));
    DeviceBuffer<float> sx{size_t(S)}, sw{size_t(S)}, d32;
    fill_random_e4m3(x.data(), x.size(), 3, s);
    fill_random_e4m3(w.data(), w.size(), 4, s);
    fill_uniform_f32(sx.data(), sx.size(), 5, 1e-3f, 1e-2f, s);
    fill_uniform_f32(sw.data(), sw.size(), 6, 1e-3f, 1e-2f, s);
    double ms = ev.median_ms([&] {
      gemm_fp8(ctx, x.data(), S, w.data(), S, y.data(), S, S, S, S, Fp8Scaling::PerTensor, sw.data(), sx.data());
    }, s, 3, reps);
    report({"gemm fp8 e4m3 per-tensor", shape, ms * 1e3, tflops(ms), "TFLOP/s", vs_bf16(tflops(ms))});
    if (gemm_fp8_rowwise_supported(ctx, x.data(), S, w.data(), S, y.data(), S, S, S, S, sw.data(), sx.data())) {
      ms = ev.median_ms([&] {
        gemm_fp8(ctx, x.data(), S, w.data(), S, y.data(), S, S, S, S, Fp8Scaling::Rowwise, sw.data(), sx.data());
      }, s, 3, reps);
      report({"gemm fp8 e4m3 rowwise fused", shape, ms * 1e3, tflops(ms), "TFLOP/s", vs_bf16(tflops(ms))});
    } else {
      report({"gemm fp8 e4m3 rowwise fused", shape, 0, 0, "-", "not offered by cuBLASLt here"});
    }
    d32.reserve_discard(size_t(S * S));
    ms = ev.median_ms([&] {
      gemm_fp8_f32(ctx, x.data(), S, w.data(), S, d32.data(), S, S, S, S);
      scale_rows_cols_to_bf16(d32.data(), S, sx.data(), sw.data(), y.data(), S, S, S, s);
    }, s, 3, reps);
    report({"gemm fp8 f32-out + epilogue", shape, ms * 1e3, tflops(ms), "TFLOP/s", vs_bf16(tflops(ms))});
  }
  {
    DeviceBuffer<int8_t> x(size_t(S * S)), w(size_t(S * S));
    DeviceBuffer<int32_t> d(size_t(S * S));
    DeviceBuffer<uint16_t> y(size_t(S * S));
    DeviceBuffer<float> sx{size_t(S)}, sw{size_t(S)};
    fill_random_int8(x.data(), x.size(), 7, s);
    fill_random_int8(w.data(), w.size(), 8, s);
    fill_uniform_f32(sx.data(), sx.size(), 9, 1e-3f, 1e-2f, s);
    fill_uniform_f32(sw.data(), sw.size(), 10, 1e-3f, 1e-2f, s);
    double ms = ev.median_ms([&] { gemm_int8(ctx, x.data(), S, w.data(), S, d.data(), S, S, S, S); }, s, 3, reps);
    report({"gemm int8 (int32 out)", shape, ms * 1e3, tflops(ms), "TOP/s", vs_bf16(tflops(ms))});
    ms = ev.median_ms([&] {
      gemm_int8(ctx, x.data(), S, w.data(), S, d.data(), S, S, S, S);
      scale_rows_cols_to_bf16(d.data(), S, sx.data(), sw.data(), y.data(), S, S, S, s);
    }, s, 3, reps);
    report({"gemm int8 + dequant epilogue", shape, ms * 1e3, tflops(ms), "TOP/s", vs_bf16(tflops(ms))});
  }
  {  // Whole W8A8 linears from BF16 activations: quantize + GEMM + scaling.
    DeviceBuffer<uint16_t> x(size_t(S * S)), y(size_t(S * S));
    fill_random_bf16(x.data(), x.size(), 11, 1.0f, s);
    Fp8Weight wf;
    wf.N = wf.N_pad = S;
    wf.K = wf.K_pad = S;
    wf.codes.reserve_discard(size_t(S * S));
    wf.scale.reserve_discard(size_t(S));
    fill_random_e4m3(wf.codes.data(), wf.codes.size(), 12, s);
    fill_uniform_f32(wf.scale.data(), size_t(S), 13, 1e-3f, 1e-2f, s);
    double ms = ev.median_ms([&] { fp8_w8a8_linear(ctx, wf, x.data(), S, S, y.data(), S); }, s, 3, reps);
    report({"fp8_w8a8_linear (quant+gemm)", shape, ms * 1e3, tflops(ms), "TFLOP/s", vs_bf16(tflops(ms))});
    Int8Weight wi;
    wi.N = wi.N_pad = S;
    wi.K = wi.K_pad = S;
    wi.codes.reserve_discard(size_t(S * S));
    wi.scale.reserve_discard(size_t(S));
    fill_random_int8(wi.codes.data(), wi.codes.size(), 14, s);
    fill_uniform_f32(wi.scale.data(), size_t(S), 15, 1e-3f, 1e-2f, s);
    ms = ev.median_ms([&] { int8_w8a8_linear(ctx, wi, x.data(), S, S, y.data(), S); }, s, 3, reps);
    report({"int8_w8a8_linear (quant+gemm+dq)", shape, ms * 1e3, tflops(ms), "TOP/s", vs_bf16(tflops(ms))});
  }
}

/// Enough copies of a weight of `bytes` to exceed 4x the L2.
/// Weight copies to rotate through so the working set is >= 4x the L2. With
/// --l2-resident: 1 (the same weights every launch, L2 hits where they fit:
/// the upper bound for a GEMV whose weights were prefetched into L2).
bool g_l2_resident = false;
int copies_for(size_t bytes, size_t l2) {
  if (g_l2_resident) return 1;
  return int(std::clamp<size_t>((4 * l2 + bytes - 1) / bytes, 2, 64));
}

std::string pct_copy(double gbs) {
  char b[64];
  std::snprintf(b, sizeof b, "%.0f%% of copy", 100.0 * gbs / g_copy_gbs);
  return b;
}

W4Weight random_w4(W4Format f, int64_t N, int64_t K, int block, uint64_t seed, cudaStream_t s) {
  W4Weight w;
  w.format = f;
  w.N = N;
  w.K = K;
  w.block = block;
  const int64_t tile = std::max<int64_t>(128, block);
  w.K_pad = (K + tile - 1) / tile * tile;
  w.blocks_pad = w.K_pad / block;
  w.codes.reserve_discard(size_t(N * w.K_pad / 2));
  w.scales.reserve_discard(size_t(N * w.blocks_pad) + 1);
  fill_random_u8(w.codes.data(), w.codes.size(), seed, s);
  fill_uniform_bf16(w.scales.data(), w.scales.size(), seed + 1, 0.005f, 0.05f, s);
  if (f == W4Format::INT4Asym) {
    w.zeros.reserve_discard(size_t(N * w.blocks_pad) + 1);
    fill_uniform_bf16(w.zeros.data(), w.zeros.size(), seed + 2, 7.0f, 9.0f, s);
  }
  return w;
}

void bench_decode(Events& ev, GpuContext& ctx, int64_t N, int64_t K, bool quick, bool w4_only) {
  const cudaStream_t s = ctx.stream();
  const size_t l2 = ctx.device().l2_bytes;
  const int reps = quick ? 5 : 30;
  const std::string shape = "N=" + std::to_string(N) + " K=" + std::to_string(K);
  DeviceBuffer<uint16_t> x(size_t(16 * K)), y(size_t(16 * N));
  fill_random_bf16(x.data(), x.size(), 20, 1.0f, s);

  // BF16 GEMV through cuBLASLt: the reference point a 4-bit GEMV must beat.
  {
    const size_t wbytes = size_t(N * K) * 2;
    const int c = copies_for(wbytes, l2);
    std::vector<DeviceBuffer<uint16_t>> ws;
    for (int i = 0; i < c; ++i) {
      ws.emplace_back(size_t(N * K));
      fill_random_bf16(ws.back().data(), size_t(N * K), 30 + uint64_t(i), 1.0f, s);
    }
    const double ms = ev.graph_ms(
        [&](int i) { gemm_bf16(ctx, x.data(), K, ws[size_t(i % c)].data(), K, y.data(), N, 1, N, K); }, s, 4 * c,
        reps);
    const double gbs = double(wbytes + size_t(K + N) * 2) / (ms * 1e-3) / 1e9;
    report({"gemv bf16 M=1 (cuBLASLt)", shape, ms * 1e3, gbs, "GB/s", pct_copy(gbs)});
  }
  // The same traffic as the NF4 weight as a plain copy (read + write), timed the
  // same way: the ceiling for a kernel of this size, launch and ramp included.
  {
    const size_t bytes = size_t(N * K) / 4;  // read + write = the NF4 codes' bytes
    const int c = copies_for(bytes, l2);
    std::vector<DeviceBuffer<std::byte>> src;
    for (int i = 0; i < c; ++i) src.emplace_back(bytes);
    DeviceBuffer<std::byte> dst(bytes);
    const double ms = ev.graph_ms(
        [&](int i) {
          KQ_CUDA_CHECK(cudaMemcpyAsync(dst.data(), src[size_t(i % c)].data(), bytes, cudaMemcpyDeviceToDevice, s));
        },
        s, 4 * c, reps);
    const double gbs = 2.0 * double(bytes) / (ms * 1e-3) / 1e9;
    report({"copy same traffic (graph)", shape, ms * 1e3, gbs, "GB/s", pct_copy(gbs)});
  }
  // W4A16 GEMVs.
  struct F {
    W4Format f;
    int block;
    const char* name;
  };
  for (const F& f : {F{W4Format::NF4, 64, "w4a16 nf4 b64"}, F{W4Format::FP4, 64, "w4a16 fp4 b64"},
                     F{W4Format::INT4, 128, "w4a16 int4 g128"}, F{W4Format::INT4Asym, 128, "w4a16 int4 g128 asym"}}) {
    std::vector<W4Weight> ws;
    ws.push_back(random_w4(f.f, N, K, f.block, 100, s));
    const size_t wbytes = ws[0].bytes();
    const int c = copies_for(wbytes, l2);
    for (int i = 1; i < c; ++i) ws.push_back(random_w4(f.f, N, K, f.block, 100 + 7 * uint64_t(i), s));
    for (const int64_t M : {int64_t(1), int64_t(8), int64_t(16)}) {
      if (quick && M > 1) continue;
      const double ms = ev.graph_ms(
          [&](int i) { w4a16_gemv(ws[size_t(i % c)], x.data(), K, M, y.data(), N, s); }, s, 4 * c, reps);
      const double gbs = double(wbytes + size_t(M * (K + N)) * 2) / (ms * 1e-3) / 1e9;
      report({std::string(f.name) + " M=" + std::to_string(M), shape, ms * 1e3, gbs, "GB/s", pct_copy(gbs)});
      if (M > 1 && !quick) {  // the batch kernel's warp counts against the split-K kernel, same traffic
        struct V {
          W4GemvTuning t;
          const char* name;
        };
        for (const V& v : {V{{8, 4, 1}, "split-K w8x4"}, V{{16, 0, 3}, "batch w16"},
                           V{{12, 0, 3}, "batch w12"}, V{{8, 0, 3}, "batch w8"}}) {
          const double vms =
              ev.graph_ms([&](int i) { w4a16_gemv(ws[size_t(i % c)], x.data(), K, M, y.data(), N, s, v.t); },
                          s, 4 * c, reps);
          const double vgbs = double(wbytes + size_t(M * (K + N)) * 2) / (vms * 1e-3) / 1e9;
          report({std::string("  ") + w4_format_name(f.f) + " M=" + std::to_string(M) + " " + v.name, shape,
                  vms * 1e3, vgbs, "GB/s", pct_copy(vgbs)});
        }
      }
    }
    if ((f.f == W4Format::NF4 || f.f == W4Format::INT4) && !quick) {  // launch variants, to tune the defaults
      struct V {
        W4GemvTuning t;
        const char* name;
      };
      for (const V& v : {V{{8, 4, 1}, "split-K w8x4"}, V{{16, 4, 2}, "stream w16 d4"}, V{{20, 3, 2}, "stream w20 d3"},
                         V{{24, 2, 2}, "stream w24 d2"}, V{{24, 3, 2}, "stream w24 d3"}, V{{32, 2, 2}, "stream w32 d2"},
                         V{{16, 0, 3}, "batch w16"}, V{{12, 0, 3}, "batch w12"},
                         V{{24, 2, 2}, "stream w24 d2 (again)"}}) {
        const double ms = ev.graph_ms(
            [&](int i) { w4a16_gemv(ws[size_t(i % c)], x.data(), K, 1, y.data(), N, s, v.t); }, s, 4 * c, reps);
        const double gbs = double(wbytes + size_t(K + N) * 2) / (ms * 1e-3) / 1e9;
        report({std::string("  ") + w4_format_name(f.f) + " M=1 " + v.name, shape, ms * 1e3, gbs, "GB/s",
                pct_copy(gbs)});
      }
    }
  }
  // FP8 decode: our GEMV (kernel alone, and with the activation quantization) vs cuBLASLt.
  if (!w4_only) {
    const int64_t N_pad = (N + 15) / 16 * 16, K_pad = (K + 127) / 128 * 128;
    std::vector<Fp8Weight> ws;
    const size_t wbytes = size_t(N_pad * K_pad) + size_t(N_pad) * 4;
    const int c = copies_for(wbytes, l2);
    for (int i = 0; i < c; ++i) {
      Fp8Weight w;
      w.N = N;
      w.K = K;
      w.N_pad = N_pad;
      w.K_pad = K_pad;
      w.codes.reserve_discard(size_t(N_pad * K_pad));
      w.scale.reserve_discard(size_t(N_pad));
      fill_random_e4m3(w.codes.data(), w.codes.size(), 200 + uint64_t(i), s);
      fill_uniform_f32(w.scale.data(), size_t(N_pad), 300 + uint64_t(i), 1e-3f, 1e-2f, s);
      ws.push_back(std::move(w));
    }
    DeviceBuffer<uint8_t> x8(size_t(8 * K_pad));
    DeviceBuffer<float> sx(8);
    quantize_rows_fp8(x.data(), K, 8, K, x8.data(), K_pad, 8, sx.data(), s);
    double ms = ev.graph_ms(
        [&](int i) {
          const Fp8Weight& w = ws[size_t(i % c)];
          fp8_gemv(x8.data(), sx.data(), w.codes.data(), w.scale.data(), K_pad, y.data(), N, 1, N, s);
        },
        s, 4 * c, reps);
    double gbs = double(wbytes + size_t(K + 2 * N)) / (ms * 1e-3) / 1e9;
    report({"fp8 gemv kernel M=1", shape, ms * 1e3, gbs, "GB/s", pct_copy(gbs)});
    for (const int64_t M : {int64_t(1), int64_t(8), int64_t(16)}) {
      if (quick && M > 1) continue;
      for (const auto& [path, label] : {std::pair{Fp8Path::Gemv, "fp8_w8a8_linear gemv"},
                                        std::pair{Fp8Path::Fused, "fp8_w8a8_linear lt-fused"},
                                        std::pair{Fp8Path::Epilogue, "fp8_w8a8_linear lt-epilogue"}}) {
        const std::string row = std::string(label) + " M=" + std::to_string(M);
        try {
          ms = ev.graph_ms(
              [&](int i) { fp8_w8a8_linear(ctx, ws[size_t(i % c)], x.data(), K, M, y.data(), N, path); }, s,
              4 * c, reps);
          gbs = double(wbytes + size_t(M * (2 * K + 2 * N))) / (ms * 1e-3) / 1e9;
          report({row, shape, ms * 1e3, gbs, "GB/s", pct_copy(gbs)});
        } catch (const std::exception& e) {
          report({row, shape, 0, 0, "-", e.what()});
        }
      }
    }
  }
}

void bench_prefill(Events& ev, GpuContext& ctx, int64_t M, int64_t N, int64_t K, bool quick) {
  const cudaStream_t s = ctx.stream();
  const int reps = quick ? 5 : 20;
  const double flop = 2.0 * double(M) * double(N) * double(K);
  const std::string shape = shape3(M, N, K);
  auto tf = [&](double ms) { return flop / (ms * 1e-3) / 1e12; };
  DeviceBuffer<uint16_t> x(size_t(M * K)), y(size_t(M * N)), wb(size_t(N * K));
  fill_random_bf16(x.data(), x.size(), 40, 1.0f, s);
  fill_random_bf16(wb.data(), wb.size(), 41, 1.0f, s);
  const double bf16_ms =
      ev.median_ms([&] { gemm_bf16(ctx, x.data(), K, wb.data(), K, y.data(), N, M, N, K); }, s, 3, reps);
  report({"prefill bf16 gemm (cuBLASLt)", shape, bf16_ms * 1e3, tf(bf16_ms), "TFLOP/s", "baseline"});
  auto vs = [&](double ms) {
    char b[64];
    std::snprintf(b, sizeof b, "%.2fx bf16 time", bf16_ms / ms);
    return std::string(b);
  };
  for (const auto& [f, block, name] : {std::tuple{W4Format::NF4, 64, "nf4 b64"}, std::tuple{W4Format::INT4, 128, "int4 g128"}}) {
    const W4Weight w = random_w4(f, N, K, block, 42, s);
    double ms = ev.median_ms([&] { w4a16_linear(ctx, w, x.data(), K, M, y.data(), N, W4PrefillPath::Fused); }, s, 3,
                             reps);
    report({std::string("prefill w4a16 ") + name + " fused", shape, ms * 1e3, tf(ms), "TFLOP/s", vs(ms)});
    ms = ev.median_ms([&] { w4a16_linear(ctx, w, x.data(), K, M, y.data(), N, W4PrefillPath::DequantGemm); }, s, 3,
                      reps);
    report({std::string("prefill w4a16 ") + name + " dq+gemm", shape, ms * 1e3, tf(ms), "TFLOP/s", vs(ms)});
    {
      ms = ev.median_ms([&] { w4_dequantize_bf16(w, wb.data(), K, s); }, s, 3, reps);
      const double gbs = double(w.bytes() + size_t(N * K) * 2) / (ms * 1e-3) / 1e9;
      report({std::string("  w4 dequantize to bf16 (") + name + ")", "N=" + std::to_string(N) + " K=" + std::to_string(K),
              ms * 1e3, gbs, "GB/s", pct_copy(gbs)});
    }
  }
}

/// --profile: a few plain launches of each decode GEMV, for ncu.
void profile_launches(GpuContext& ctx) {
  const cudaStream_t s = ctx.stream();
  {  // the fused prefill GEMM, M = 2048
    const int64_t M = 2048, N = 11008, K = 4096;
    DeviceBuffer<uint16_t> x{size_t(M * K)}, y{size_t(M * N)};
    fill_random_bf16(x.data(), x.size(), 1, 1.0f, s);
    const W4Weight w = random_w4(W4Format::NF4, N, K, 64, 7, s);
    w4a16_gemm(w, x.data(), K, M, y.data(), N, s);
  }
  for (const auto& [N, K] : {std::pair<int64_t, int64_t>{11008, 4096}, std::pair<int64_t, int64_t>{4096, 11008}}) {
    DeviceBuffer<uint16_t> x{size_t(16 * K)}, y{size_t(16 * N)};
    fill_random_bf16(x.data(), x.size(), 1, 1.0f, s);
    for (const W4Format f : {W4Format::NF4, W4Format::INT4}) {
      const W4Weight w = random_w4(f, N, K, f == W4Format::NF4 ? 64 : 128, 7, s);
      for (const int64_t M : {1, 16}) w4a16_gemv(w, x.data(), K, M, y.data(), N, s);
    }
  }
  KQ_CUDA_CHECK(cudaStreamSynchronize(s));
}

}  // namespace

int main(int argc, char** argv) {
  const char* csv = nullptr;
  bool quick = false, profile = false, w4_only = false, gemv_only = false;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--csv") && i + 1 < argc) csv = argv[++i];
    else if (!std::strcmp(argv[i], "--quick")) quick = true;
    else if (!std::strcmp(argv[i], "--profile")) profile = true;
    else if (!std::strcmp(argv[i], "--w4")) w4_only = true;
    else if (!std::strcmp(argv[i], "--w4gemv")) w4_only = gemv_only = true;
    else if (!std::strcmp(argv[i], "--gemv")) gemv_only = true;
    else if (!std::strcmp(argv[i], "--l2-resident")) g_l2_resident = true;
    else {
      std::fprintf(stderr, "usage: bench_cuda [--csv FILE] [--quick] [--profile] [--w4] [--w4gemv] [--gemv] [--l2-resident]\n");
      return 2;
    }
  }
  try {
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess || count == 0) {
      std::printf("bench_cuda: no CUDA device, nothing to measure\n");
      return 0;
    }
    cudaStream_t stream = nullptr;
    KQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
    {
      GpuContext ctx(stream);
      const DeviceQuery& d = ctx.device();
      std::printf("device: %s, cc %d.%d, %d SMs, L2 %.0f MiB, cuBLASLt %zu, runtime %d\n", d.name.c_str(), d.cc_major,
                  d.cc_minor, d.multiprocessors, double(d.l2_bytes) / (1 << 20), d.cublaslt_version,
                  d.runtime_version);
      if (profile) {
        profile_launches(ctx);
        return 0;
      }
      Events ev;
      bench_copy(ev, stream);
      if (!w4_only && !gemv_only) bench_gemms(ev, ctx, quick ? 4096 : 8192, quick);
      bench_decode(ev, ctx, 11008, 4096, quick, w4_only);
      bench_decode(ev, ctx, 4096, 11008, quick, w4_only);
      if (w4_only)  // the other 7B decode shapes: q/o, fused QKV, fused gate-up
        for (const auto& [N, K] : {std::pair<int64_t, int64_t>{4096, 4096}, std::pair<int64_t, int64_t>{12288, 4096},
                                   std::pair<int64_t, int64_t>{22016, 4096}})
          bench_decode(ev, ctx, N, K, quick, w4_only);
      if (!gemv_only)
        for (const int64_t M : {int64_t(512), int64_t(2048)}) bench_prefill(ev, ctx, M, 11008, 4096, quick);
      if (w4_only && !gemv_only)
        for (const int64_t M : {int64_t(32), int64_t(128)}) bench_prefill(ev, ctx, M, 11008, 4096, quick);
    }
    KQ_CUDA_CHECK(cudaStreamDestroy(stream));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_cuda: %s\n", e.what());
    return 1;
  }
  if (csv) {
    if (FILE* f = std::fopen(csv, "w")) {
      std::fprintf(f, "name,shape,us,value,unit,note\n");
      for (const Row& r : g_rows)
        std::fprintf(f, "\"%s\",\"%s\",%.3f,%.3f,%s,\"%s\"\n", r.name.c_str(), r.shape.c_str(), r.us, r.value,
                     r.unit.c_str(), r.note.c_str());
      std::fclose(f);
    }
  }
  return 0;
}
