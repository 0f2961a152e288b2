// Random-weight GPU Linear ops (benchmarks of large shapes): device-side
// generation in the final layout, or host F32 → quantize_linear → to_cuda.
#include "gpu/cuda_linear_random.hpp"

#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <numbers>
#include <random>
#include <type_traits>
#include <vector>

#include "formats/fp8.hpp"
#include "gpu/cuda_linear_kernels.hpp"
#include "gpu/cuda_linear_ops.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/random_fill.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"

namespace kq::gpu {
namespace {

/// SplitMix64 finalizer: a counter-based hash for per-element random numbers.
uint64_t mix64(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

/// Uniform in [0, 1) from (seed, i).
double uniform_at(uint64_t seed, uint64_t i) { return double(mix64(seed ^ mix64(i)) >> 11) * 0x1.0p-53; }

/// A different seed per buffer of one matrix.
uint64_t sub_seed(uint64_t seed, uint64_t part) { return mix64(seed * 8 + part); }

void check_args(int64_t N, int64_t K, float sigma, const char* what) {
  if (N < 1 || K < 1 || !(sigma > 0.0f) || !std::isfinite(sigma))
    raise<InvalidArgument>("{}: shape [{}, {}] and sigma {} (need N, K >= 1 and a finite sigma > 0)", what, N, K,
                           sigma);
}

/// F32 [N, K] ~ N(0, sigma²) on the host (Box–Muller on hashed uniforms), parallel over rows.
Tensor host_normal(int64_t N, int64_t K, uint64_t seed, float sigma) {
  Tensor w = Tensor::empty(DType::F32, {N, K});
  float* p = w.mutable_data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const uint64_t i = uint64_t(n * K + k);
      const double u1 = 1.0 - uniform_at(seed, 2 * i), u2 = uniform_at(seed, 2 * i + 1);  // u1 in (0, 1]
      p[n * K + k] = float(sigma * std::sqrt(-2.0 * std::log(u1)) * std::cos(2.0 * std::numbers::pi * u2));
    }
  return w;
}

/// Root-mean-square of the values the device fill produces for a layout's codes.
double rms(const std::vector<double>& v) {
  double s = 0.0;
  for (double x : v) s += x * x;
  return std::sqrt(s / double(v.size()));
}

/// E4M3 values of fill_random_e4m3: a uniform byte, NaN and ±0 codes mapped to ±1.
double e4m3_fill_rms() {
  std::vector<double> v;
  for (int c = 0; c < 256; ++c) {
    const int m = (c & 0x7F) == 0x7F || (c & 0x7F) == 0 ? ((c & 0x80) | 0x38) : c;
    v.push_back(formats::fp8_decode(uint8_t(m), FP8Format::E4M3));
  }
  return rms(v);
}

/// Per-row scales uniform in ±10 % around `c` (all equal to c when per-tensor), uploaded.
cuda::DeviceBuffer<float> row_scales(int64_t N, double c, bool per_channel, uint64_t seed) {
  std::vector<float> s(static_cast<size_t>(N));
  for (int64_t n = 0; n < N; ++n)
    s[size_t(n)] = float(per_channel ? c * (0.9 + 0.2 * uniform_at(seed, uint64_t(n))) : c);
  cuda::DeviceBuffer<float> d;
  d.upload(s);
  return d;
}

std::unique_ptr<CudaLinear> device_bf16(int64_t N, int64_t K, uint64_t seed, cuda::GpuContext& ctx, float sigma,
                                        std::string format) {
  cuda::DeviceBuffer<uint16_t> w(size_t(N * K));
  cuda::fill_random_bf16(w.data(), w.size(), sub_seed(seed, 0), sigma, ctx.stream());
  return make_cuda_linear_bf16(std::move(w), N, K, {}, std::move(format));
}

template <class Code>
cuda::W8Weight<Code> device_w8(const QuantSpec& spec, int64_t N, int64_t K, uint64_t seed, cuda::GpuContext& ctx,
                               float sigma) {
  cuda::W8Weight<Code> w;
  w.N = w.N_pad = N;
  w.K = w.K_pad = K;
  w.per_channel = spec.weight_scales == ScaleGranularity::PerChannel;
  w.codes = cuda::DeviceBuffer<Code>(size_t(N * K));
  double code_rms = 0.0;
  if constexpr (std::is_same_v<Code, int8_t>) {
    cuda::fill_random_int8(w.codes.data(), w.codes.size(), sub_seed(seed, 1), ctx.stream());
    code_rms = std::sqrt(127.0 * 128.0 / 3.0);  // uniform integers in [-127, 127]
  } else {
    cuda::fill_random_e4m3(w.codes.data(), w.codes.size(), sub_seed(seed, 1), ctx.stream());
    code_rms = e4m3_fill_rms();
  }
  w.scale = row_scales(N, sigma / code_rms, w.per_channel, sub_seed(seed, 2));
  return w;
}

/// AWQ's input scales for random weights: 2^u, u uniform in [-1, 1], per
/// input channel, drawn from K alone: linears of one K share them, as the
/// members of a group that reads one input do (quantize_model), so q/k/v and
/// gate/up of a random model fuse like a quantized one's.
std::vector<float> awq_input_scales(int64_t K) {
  std::mt19937_64 gen(sub_seed(uint64_t(K), 3));
  std::uniform_real_distribution<double> u(-1.0, 1.0);
  std::vector<float> xs(static_cast<size_t>(K));
  for (auto& v : xs) v = float(std::exp2(u(gen)));
  return xs;
}

std::unique_ptr<CudaLinear> device_w4(const QuantSpec& spec, int64_t N, int64_t K, uint64_t seed,
                                      cuda::GpuContext& ctx, float sigma) {
  cuda::W4Weight w;
  switch (spec.format) {
    case PrecisionFormat::NF4: w.format = cuda::W4Format::NF4; break;
    case PrecisionFormat::FP4: w.format = cuda::W4Format::FP4; break;
    case PrecisionFormat::FP4_BNB: w.format = cuda::W4Format::FP4Bnb; break;
    default: w.format = spec.symmetric ? cuda::W4Format::INT4 : cuda::W4Format::INT4Asym; break;
  }
  w.N = N;
  w.K = w.K_pad = K;
  w.block = spec.block_size;
  w.blocks_pad = K / spec.block_size;
  const size_t nscale = size_t(N * w.blocks_pad) + 1;  // + 1 spare element (w4a16.hpp)
  w.codes = cuda::DeviceBuffer<uint8_t>(size_t(N * K / 2));
  cuda::fill_random_u8(w.codes.data(), w.codes.size(), sub_seed(seed, 1), ctx.stream());
  // Value of a uniform code before scaling (INT4 asym with zero point 8 = INT4 sym).
  const cuda::W4Format vf = w.format == cuda::W4Format::INT4Asym ? cuda::W4Format::INT4 : w.format;
  const std::array<float, 16> cb = cuda::w4_codebook(vf);
  const double vrms = rms(std::vector<double>(cb.begin(), cb.end()));
  const double c = sigma / (vrms * std::sqrt(1.0 + 1.0 / 12.0));  // E[s²] = c²(1 + 1/12) for s ~ U[c/2, 3c/2]
  w.scales = cuda::DeviceBuffer<uint16_t>(nscale);
  cuda::fill_uniform_bf16(w.scales.data(), nscale, sub_seed(seed, 2), float(0.5 * c), float(1.5 * c), ctx.stream());
  if (w.format == cuda::W4Format::INT4Asym) {
    w.zeros = cuda::DeviceBuffer<uint16_t>(nscale);
    detail::fill_u16(w.zeros.data(), nscale, f32_to_bf16(8.0f), ctx.stream());
  }
  if (spec.awq) {
    const std::vector<float> xs = awq_input_scales(K);
    cuda::set_w4_input_scale(w, xs.data());
  }
  return make_cuda_linear_w4(std::move(w), {}, spec.name());
}

std::unique_ptr<CudaLinear> finish(std::unique_ptr<CudaLinear> op, cuda::GpuContext& ctx) {
  KQ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  return op;
}

}  // namespace

std::unique_ptr<CudaLinear> random_cuda_linear_bf16(int64_t N, int64_t K, uint64_t seed, cuda::GpuContext& ctx,
                                                    float sigma) {
  check_args(N, K, sigma, "random_cuda_linear_bf16");
  if (N % 16 == 0 && K % 128 == 0) return finish(device_bf16(N, K, seed, ctx, sigma, "bf16"), ctx);
  const Tensor w = host_normal(N, K, seed, sigma);
  std::vector<uint16_t> h(size_t(N * K));
  const float* p = w.data<float>();
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N * K; ++i) h[size_t(i)] = f32_to_bf16(p[i]);
  cuda::DeviceBuffer<uint16_t> d;
  d.upload(h);
  return make_cuda_linear_bf16(std::move(d), N, K, {}, "bf16");
}

std::unique_ptr<CudaLinear> random_cuda_linear(const QuantSpec& spec, int64_t N, int64_t K, uint64_t seed,
                                               cuda::GpuContext& ctx, float sigma) {
  check_args(N, K, sigma, "random_cuda_linear");
  validate_quant_spec(spec);
  const DeviceLayout layout = device_layout(spec, ctx.device());
  const int64_t ktile = layout == DeviceLayout::W4 ? std::max(128, spec.block_size) : 128;
  if (N % 16 == 0 && K % ktile == 0) {
    switch (layout) {
      case DeviceLayout::BF16: return finish(device_bf16(N, K, seed, ctx, sigma, spec.name()), ctx);
      case DeviceLayout::Int8W8A8:
        return finish(make_cuda_linear_int8(device_w8<int8_t>(spec, N, K, seed, ctx, sigma), {}, spec.name()), ctx);
      case DeviceLayout::Fp8W8A8:
        return finish(make_cuda_linear_fp8(device_w8<uint8_t>(spec, N, K, seed, ctx, sigma), {}, spec.name()), ctx);
      case DeviceLayout::W4: return finish(device_w4(spec, N, K, seed, ctx, sigma), ctx);
    }
  }
  if (spec.awq) {
    // The INT4 weight of W · diag(s), s = 1 / the input scales above.
    const std::vector<float> xs = awq_input_scales(K);
    Tensor w = host_normal(N, K, seed, sigma), s = Tensor::empty(DType::F32, {K});
    float* pw = w.mutable_data<float>();
    for (int64_t k = 0; k < K; ++k) s.mutable_data<float>()[k] = 1.0f / xs[size_t(k)];
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) pw[n * K + k] *= s.data<float>()[k];
    return to_cuda(*make_awq_linear(quantize_weight(w, awq_base_spec(spec)), Tensor(), s), ctx);
  }
  const auto cpu = quantize_linear(host_normal(N, K, seed, sigma), Tensor(), spec);
  return to_cuda(*cpu, ctx);
}

std::unique_ptr<CudaLinear> random_cuda_linear(const std::string& mode, int64_t N, int64_t K, uint64_t seed,
                                               cuda::GpuContext& ctx, float sigma) {
  if (mode == "bf16" || mode == "f32" || mode == "fp32") return random_cuda_linear_bf16(N, K, seed, ctx, sigma);
  return random_cuda_linear(parse_quant_mode(mode), N, K, seed, ctx, sigma);
}

}  // namespace kq::gpu
