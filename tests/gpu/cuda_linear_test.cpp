// CudaLinear / to_cuda: every CPU weight format converted to the GPU and run
// there, against a float64 host reference computed from the CPU op's own
// dequantized weight and the BF16 activations (with the per-token activation
// quantization simulated for the W8A8 device paths); odd shapes, M = 1..64,
// strided and poisoned buffers, the host entry, CUDA graph capture.
#include <cuda_runtime_api.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "cuda/gpu_test_util.hpp"
#include "cuda/host_quant.hpp"
#include "gpu/cuda_linear.hpp"
#include "gpu/cuda_linear_random.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_info.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/quantize.hpp"
#include "quant/packed_weight.hpp"

/// Skips the test when no CUDA device can be used (this layer does not link kq_api's get_fp8_info).
#define KQ_GPU_REQUIRE_DEVICE()                                                      \
  do {                                                                               \
    const ::kq::cuda::DeviceQuery kq_q_ = ::kq::cuda::query_device(0);               \
    if (!kq_q_.found) GTEST_SKIP() << "no CUDA device: " << kq_q_.error;             \
  } while (0)

namespace kq::testing {
namespace {

using cuda::DeviceBuffer;
using gpu::CudaLinear;

/// How the device path treats the activations (decides the reference input).
enum class Act { BF16, Int8PerToken, E4M3PerToken };

/// Tolerances (relative L2 against the float64 reference), all in one place.
/// The reference already holds the CPU op's quantized weights and, for W8A8,
/// the activations quantized exactly as the device does, so these bound only
/// what the GPU adds: BF16 output rounding (~1.5e-3 rms), the bias added to
/// the BF16 GEMM output (a second rounding), and per layout:
///  * exact weights (INT8 / E4M3 codes and FP32 scales): nothing more;
///  * BF16 weights (f32, weight-only INT8/FP8, E5M2): one weight rounding,
///    relative <= 2^-9, ~2.3e-3 rms;
///  * W4A16: block scales held in BF16 and the GEMV's BF16 NF4 code values
///    (or the prefill path's BF16 weights): ~1.5e-3 each (tests/cuda/tolerances.hpp).
constexpr double kTolExactWeights = 5e-3;
constexpr double kTolBf16Weights = 8e-3;
constexpr double kTolW4 = 1.2e-2;
/// Dequantized weight read back vs the CPU op's: BF16 rounding of weights/scales.
constexpr double kTolWeightReadback = 5e-3;

struct Expect {
  Act act;
  double tol;
};

/// What the device does with `mode` (see to_cuda's documentation).
Expect expect_for(const std::string& mode) {
  if (mode == "f32") return {Act::BF16, kTolBf16Weights};
  const QuantSpec s = parse_quant_mode(mode);
  switch (s.format) {
    case PrecisionFormat::INT8:
      return s.quantize_activations ? Expect{Act::Int8PerToken, kTolExactWeights} : Expect{Act::BF16, kTolBf16Weights};
    case PrecisionFormat::FP8_E4M3: {
      const cuda::DeviceQuery q = cuda::query_device(0);
      const bool fp8 = q.cc_major > 8 || (q.cc_major == 8 && q.cc_minor >= 9);
      if (s.quantize_activations && fp8) return {Act::E4M3PerToken, kTolExactWeights};
      return {Act::BF16, kTolBf16Weights};
    }
    case PrecisionFormat::FP8_E5M2: return {Act::BF16, kTolBf16Weights};
    default: return {Act::BF16, kTolW4};
  }
}

/// AWQ's per-input-channel scales s in [1/4, 4] (what the search finds spans about that).
Tensor random_awq_scales(Rng& r, int64_t K) {
  Tensor s = Tensor::empty(DType::F32, {K});
  for (int64_t k = 0; k < K; ++k) s.mutable_data<float>()[k] = float(std::exp2(r.uniform(-2.0, 2.0)));
  return s;
}

/// The CPU op for `mode` ("f32" or a quantization mode) on a random N(0, 1) weight;
/// AWQ modes use `awq_scales` (F32 [K]) when given, else random ones.
std::unique_ptr<Linear> make_cpu_op(Rng& r, const std::string& mode, int64_t N, int64_t K, bool with_bias,
                                    double bias_sigma, const Tensor* awq_scales = nullptr) {
  Tensor w = Tensor::empty(DType::F32, {N, K});
  float* pw = w.mutable_data<float>();
  for (int64_t i = 0; i < N * K; ++i) pw[i] = float(r.normal());
  Tensor b;
  if (with_bias) {
    b = Tensor::empty(DType::F32, {N});
    for (int64_t i = 0; i < N; ++i) b.mutable_data<float>()[i] = float(r.normal() * bias_sigma);
  }
  if (mode == "f32") return make_linear_f32(w, b);
  const QuantSpec spec = parse_quant_mode(mode);
  if (!spec.awq) return quantize_linear(w, b, spec);
  // AWQ: the INT4 weight of W · diag(s) and s.
  const Tensor s = awq_scales ? *awq_scales : random_awq_scales(r, K);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) pw[n * K + k] *= s.data<float>()[k];
  return make_awq_linear(quantize_weight(w, awq_base_spec(spec)), b, s);
}

/// float64 reference y [M, N] of the CPU op's weights for BF16 x [M, ldx],
/// with the device's per-token activation quantization applied when `act` says so.
std::vector<double> reference(const Linear& cpu, const std::vector<uint16_t>& x, int64_t M, int64_t ldx, Act act) {
  const int64_t N = cpu.out_features(), K = cpu.in_features();
  std::vector<double> xr(size_t(M * K));
  if (act == Act::BF16) {
    for (int64_t m = 0; m < M; ++m)
      for (int64_t k = 0; k < K; ++k) xr[size_t(m * K + k)] = bf16f(x[size_t(m * ldx + k)]);
  } else if (act == Act::Int8PerToken) {
    std::vector<int8_t> q;
    std::vector<float> s;
    quantize_rows_int8_ref(x, M, K, ldx, q, s);
    for (int64_t i = 0; i < M * K; ++i) xr[size_t(i)] = double(q[size_t(i)]) * s[size_t(i / K)];
  } else {
    std::vector<uint8_t> q;
    std::vector<float> s;
    quantize_rows_fp8_ref(x, M, K, ldx, q, s);
    for (int64_t i = 0; i < M * K; ++i) xr[size_t(i)] = double(e4m3_to_f32(q[size_t(i)])) * s[size_t(i / K)];
  }
  const Tensor w = cpu.dequantized_weight();
  const Tensor b = cpu.bias();
  const float* pw = w.data<float>();
  std::vector<double> y(size_t(M * N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < N; ++n) {
      double acc = b.defined() ? double(b.data<float>()[n]) : 0.0;
      for (int64_t k = 0; k < K; ++k) acc += xr[size_t(m * K + k)] * double(pw[n * K + k]);
      y[size_t(m * N + n)] = acc;
    }
  return y;
}

/// Runs forward_device on poisoned, strided buffers: x [M, ldx] with NaN in
/// the padding columns, y [M, ldy] pre-filled with NaN. Checks the padding of y
/// is untouched and returns y [M, N] as float.
std::vector<float> run_device(const CudaLinear& op, cuda::GpuContext& ctx, const std::vector<uint16_t>& x, int64_t M,
                              int64_t ldx, int64_t ldy) {
  const int64_t N = op.out_features();
  DeviceBuffer<uint16_t> dx, dy(size_t(M * ldy));
  dx.upload(x);
  dy.fill_bytes(0xFF, ctx.stream());
  op.forward_device(ctx, dx.data(), ldx, M, dy.data(), ldy);
  KQ_CUDA_CHECK(cudaStreamSynchronize(ctx.stream()));
  const std::vector<uint16_t> h = dy.download();
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = N; n < ldy; ++n)
      EXPECT_EQ(h[size_t(m * ldy + n)], 0xFFFF) << "y padding overwritten at [" << m << ", " << n << "]";
  return bf16_matrix(h, size_t(M), size_t(N), size_t(ldy));
}

/// BF16 x [M, ldx] ~ N(0, 1) with NaN in the padding columns.
std::vector<uint16_t> random_x(Rng& r, int64_t M, int64_t K, int64_t ldx) {
  std::vector<uint16_t> x = random_bf16(r, size_t(M * ldx));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t k = K; k < ldx; ++k) x[size_t(m * ldx + k)] = 0x7FC0;  // NaN
  return x;
}

struct Shape {
  int64_t N, K;
};

/// Converts `mode` on one shape and checks every M, with and without bias.
void check_mode(Rng& r, cuda::GpuContext& ctx, const std::string& mode, Shape s, const std::vector<int64_t>& Ms) {
  const Expect e = expect_for(mode);
  for (bool with_bias : {false, true}) {
    const auto cpu = make_cpu_op(r, mode, s.N, s.K, with_bias, std::sqrt(double(s.K)));
    const auto gpu = gpu::to_cuda(*cpu, ctx);
    ASSERT_EQ(gpu->in_features(), s.K);
    ASSERT_EQ(gpu->out_features(), s.N);
    EXPECT_EQ(gpu->format(), cpu->format());
    EXPECT_EQ(gpu->bias().defined(), with_bias);
    for (int64_t M : Ms) {
      const int64_t ldx = s.K + (M % 2 ? 3 : 0), ldy = s.N + 5;
      const std::vector<uint16_t> x = random_x(r, M, s.K, ldx);
      const std::vector<double> ref = reference(*cpu, x, M, ldx, e.act);
      const std::vector<float> got = run_device(*gpu, ctx, x, M, ldx, ldy);
      const double err = rel_l2(ref, got);
      EXPECT_LE(err, e.tol) << mode << " N=" << s.N << " K=" << s.K << " M=" << M << " bias=" << with_bias
                            << " seed=" << r.seed;
    }
  }
}

TEST(CudaLinear, ListedFormatsMatchFloat64ReferenceOnOddShapes) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  const std::vector<std::string> modes = {"f32",       "int8",         "int8-wo",        "int8-pt",
                                          "int8-pt-wo", "fp8",         "fp8-pt",         "fp8-e5m2",
                                          "fp8-e5m2-wo", "fp8-wo",     "nf4",            "nf4-nodq",
                                          "nf4-b32",   "nf4-b256-bf16", "fp4",           "fp4-nodq",
                                          "int4-g128", "int4-g128-asym", "int4-g32-asym", "int4-g256",
                                          "fp4-bnb",   "fp4-bnb-nodq", "fp4-bnb-b32-bf16", "fp4-bnb-b256-nodq"};
  const std::vector<Shape> shapes = {{16, 128}, {37, 300}, {129, 1000}};
  for (const std::string& mode : modes)
    for (Shape s : shapes) check_mode(r, ctx, mode, s, {1, 3, 8, 9, 64});
}

TEST(CudaLinear, EveryCpuModeConverts) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  for (const std::string& mode : valid_quant_mode_names()) check_mode(r, ctx, mode, {40, 200}, {1, 9});
}

// AWQ (the INT4 weight of W · diag(s) with 1 / s applied to x by the W4A16
// kernels) on every path: M = 1 streaming GEMV, batch GEMV, prefill.
TEST(CudaLinear, AwqMatchesTheCpuOpOnEveryPath) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  for (const std::string mode : {"awq", "awq-g64", "awq-g128-sym"})
    for (Shape s : {Shape{37, 300}, Shape{130, 1000}}) check_mode(r, ctx, mode, s, {1, 2, 16, 17, 64});
}

TEST(CudaLinear, DeviceWeightsMatchCpuOp) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  for (const std::string mode :
       {"f32", "int8", "int8-pt", "fp8", "fp8-e5m2", "nf4", "fp4", "fp4-bnb", "int4-g128-asym", "awq",
        "awq-g128-sym"}) {
    const auto cpu = make_cpu_op(r, mode, 33, 260, true, 1.0);
    const auto gpu = gpu::to_cuda(*cpu, ctx);
    const Tensor wc = cpu->dequantized_weight(), wg = gpu->dequantized_weight();
    ASSERT_EQ(wg.numel(), wc.numel()) << mode;
    std::vector<double> ref(wc.data<float>(), wc.data<float>() + wc.numel());
    std::vector<float> got(wg.data<float>(), wg.data<float>() + wg.numel());
    const Expect e = expect_for(mode);
    if (e.act != Act::BF16) {
      EXPECT_EQ(rel_l2(ref, got), 0.0) << mode << ": W8A8 codes and scales are uploaded unchanged";
    } else {
      EXPECT_LE(rel_l2(ref, got), kTolWeightReadback) << mode;
    }
    const Tensor bc = cpu->bias(), bg = gpu->bias();
    ASSERT_TRUE(bg.defined());
    for (int64_t n = 0; n < 33; ++n) EXPECT_EQ(bg.data<float>()[n], bc.data<float>()[n]);
    EXPECT_GT(gpu->weight_bytes(), 0u);
  }
}

TEST(CudaLinear, WeightBytesAreTheDeviceLayouts) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  const int64_t N = 37, K = 300;
  const auto round_up = [](int64_t v, int64_t m) { return (v + m - 1) / m * m; };
  const size_t bias = 4 * N;
  // BF16 [N, K] + F32 bias.
  EXPECT_EQ(gpu::to_cuda(*make_cpu_op(r, "f32", N, K, true, 1.0), ctx)->weight_bytes(), size_t(2 * N * K) + bias);
  // W8: codes [round_up(N, 16), round_up(K, 128)] + F32 scales [N_pad] (w8a8.hpp).
  const size_t w8 = size_t(round_up(N, 16) * round_up(K, 128) + 4 * round_up(N, 16));
  EXPECT_EQ(gpu::to_cuda(*make_cpu_op(r, "int8", N, K, true, 1.0), ctx)->weight_bytes(), w8 + bias);
  EXPECT_EQ(gpu::to_cuda(*make_cpu_op(r, "int8", N, K, false, 1.0), ctx)->weight_bytes(), w8);
  // W4: codes [N, K_pad / 2] + BF16 scales [N, K_pad / block] + 1 (+ zeros for asym), w4a16.hpp.
  const int64_t kp = round_up(K, 128);
  const size_t w4 = size_t(N * kp / 2 + 2 * (N * kp / 64 + 1));
  EXPECT_EQ(gpu::to_cuda(*make_cpu_op(r, "nf4", N, K, false, 1.0), ctx)->weight_bytes(), w4);
  const size_t w4a = size_t(N * kp / 2 + 2 * 2 * (N * kp / 128 + 1));
  EXPECT_EQ(gpu::to_cuda(*make_cpu_op(r, "int4-g128-asym", N, K, false, 1.0), ctx)->weight_bytes(), w4a);
}

// A quantized model's unquantized BF16/F16 layers (make_linear_w16) reach the
// device as BF16: BF16 bits unchanged, F16 rounded as an F32 copy of the same
// values was before, so the device op equals to_cuda of the FP32 op over those values.
TEST(CudaLinear, SixteenBitOpsUploadAsTheFp32OpOfTheSameValues) {
  KQ_GPU_REQUIRE_DEVICE();
  cuda::GpuContext ctx;
  const int64_t N = 37, K = 300;
  for (const DType t : {DType::BF16, DType::F16}) {
    std::vector<float> v(static_cast<size_t>(N * K));
    for (size_t i = 0; i < v.size(); ++i) v[i] = float(int64_t(i * 7919 % 2001) - 1000) * 1.37e-3f;
    Tensor w16 = Tensor::empty(t, {N, K});
    convert_from_f32(t, v.data(), w16.raw_mut(), v.size());
    const Tensor w32 = w16.to_f32();
    Tensor b = Tensor::empty(DType::F32, {N});
    for (int64_t n = 0; n < N; ++n) b.mutable_data<float>()[n] = 0.01f * float(n);
    const auto g16 = gpu::to_cuda(*make_linear_w16(w16, b), ctx);
    const auto g32 = gpu::to_cuda(*make_linear_f32(w32, b), ctx);
    EXPECT_EQ(g16->format(), t == DType::BF16 ? "bf16" : "f16");
    EXPECT_EQ(g16->weight_bytes(), g32->weight_bytes());
    const Tensor a = g16->dequantized_weight(), c = g32->dequantized_weight();
    ASSERT_EQ(a.numel(), c.numel());
    for (int64_t i = 0; i < a.numel(); ++i)
      ASSERT_EQ(a.data<float>()[i], c.data<float>()[i]) << dtype_name(t) << " " << i;
  }
}

TEST(CudaLinear, HostForwardMatchesReference) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  for (const std::string mode : {"f32", "int8", "fp8", "nf4", "int4-g128"}) {
    cuda::GpuContext ctx;
    const auto cpu = make_cpu_op(r, mode, 50, 333, true, 5.0);
    const auto gpu = gpu::to_cuda(*cpu, ctx);
    for (int64_t M : {1, 9}) {
      const std::vector<uint16_t> x = random_bf16(r, size_t(M * 333));
      std::vector<float> xf(x.size()), y(size_t(M * 50), std::nanf(""));
      for (size_t i = 0; i < x.size(); ++i) xf[i] = bf16f(x[i]);
      gpu->forward(xf.data(), M, y.data(), ExecContext{});
      EXPECT_LE(rel_l2(reference(*cpu, x, M, 333, expect_for(mode).act), y), expect_for(mode).tol) << mode;
    }
  }
}

TEST(CudaLinear, ForwardDeviceCanBeCapturedInAGraph) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cudaStream_t stream = nullptr;
  KQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking));
  {
    cuda::GpuContext ctx(stream);
    for (const std::string mode : {"f32", "int8", "fp8", "nf4", "int4-g128-asym"}) {
      const auto cpu = make_cpu_op(r, mode, 64, 256, true, 4.0);
      const auto gpu = gpu::to_cuda(*cpu, ctx);
      for (int64_t M : {1, 16}) {
        DeviceBuffer<uint16_t> dx(size_t(M * 256)), dy(size_t(M * 64));
        const std::vector<uint16_t> x0 = random_bf16(r, size_t(M * 256));
        dx.upload(x0);
        gpu->forward_device(ctx, dx.data(), 256, M, dy.data(), 64);  // warm-up: plans, scratch
        KQ_CUDA_CHECK(cudaStreamSynchronize(stream));
        cudaGraph_t graph = nullptr;
        KQ_CUDA_CHECK(cudaStreamBeginCapture(stream, cudaStreamCaptureModeGlobal));
        gpu->forward_device(ctx, dx.data(), 256, M, dy.data(), 64);
        KQ_CUDA_CHECK(cudaStreamEndCapture(stream, &graph));
        cudaGraphExec_t exec = nullptr;
        KQ_CUDA_CHECK(cudaGraphInstantiate(&exec, graph, 0));
        const std::vector<uint16_t> x1 = random_bf16(r, size_t(M * 256));  // new input, same buffers
        dx.upload(x1);
        dy.fill_bytes(0xFF, stream);
        KQ_CUDA_CHECK(cudaGraphLaunch(exec, stream));
        KQ_CUDA_CHECK(cudaStreamSynchronize(stream));
        const std::vector<float> got = bf16_matrix(dy.download(), size_t(M), 64, 64);
        EXPECT_LE(rel_l2(reference(*cpu, x1, M, 256, expect_for(mode).act), got), expect_for(mode).tol)
            << mode << " M=" << M;
        KQ_CUDA_CHECK(cudaGraphExecDestroy(exec));
        KQ_CUDA_CHECK(cudaGraphDestroy(graph));
      }
    }
  }
  KQ_CUDA_CHECK(cudaStreamDestroy(stream));
}

TEST(CudaLinear, RejectsBadArgumentsAndUnknownOps) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  const auto gpu = gpu::to_cuda(*make_cpu_op(r, "int8", 16, 64, false, 1.0), ctx);
  DeviceBuffer<uint16_t> b(16 * 64);
  EXPECT_THROW(gpu->forward_device(ctx, b.data(), 64, 0, b.data(), 16), InvalidArgument);
  EXPECT_THROW(gpu->forward_device(ctx, b.data(), 63, 1, b.data(), 16), InvalidArgument);
  EXPECT_THROW(gpu->forward_device(ctx, b.data(), 64, 1, b.data(), 15), InvalidArgument);
  EXPECT_THROW(gpu::to_cuda(*gpu, ctx), Unsupported);  // a CudaLinear is not a CPU op
}

/// float64 y = x · Wᵀ for an op's own read-back weights (no CPU op involved).
double self_check_error(const CudaLinear& op, cuda::GpuContext& ctx, Rng& r, int64_t M, Act act) {
  const int64_t N = op.out_features(), K = op.in_features();
  const std::vector<uint16_t> x = random_x(r, M, K, K);
  const std::vector<double> ref = reference(op, x, M, K, act);
  return rel_l2(ref, run_device(op, ctx, x, M, K, N));
}

TEST(RandomCudaLinear, ValidWeightsInTheToCudaLayout) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  const float sigma = 0.05f;
  // {64, 256}: device fast path; {40, 200}: host F32 -> quantize_linear -> to_cuda.
  for (Shape s : {Shape{64, 256}, Shape{40, 200}})
    for (const std::string mode : {"bf16", "int8", "int8-pt", "int8-wo", "fp8", "fp8-e5m2", "nf4", "fp4",
                                   "int4-g128", "int4-g128-asym", "nf4-b256", "fp4-bnb"}) {
      const auto op = gpu::random_cuda_linear(mode, s.N, s.K, 1234, ctx, sigma);
      EXPECT_EQ(op->format(), mode == "bf16" ? std::string("bf16") : parse_quant_mode(mode).name());
      EXPECT_EQ(op->in_features(), s.K);
      EXPECT_EQ(op->out_features(), s.N);
      EXPECT_FALSE(op->bias().defined());
      // Same layout (and so the same bytes) as to_cuda of a CPU op of this mode.
      const auto ref_op = gpu::to_cuda(*make_cpu_op(r, mode == "bf16" ? "f32" : mode, s.N, s.K, false, 1.0), ctx);
      EXPECT_EQ(op->weight_bytes(), ref_op->weight_bytes()) << mode;
      // Finite weights of about the requested rms.
      const Tensor w = op->dequantized_weight();
      double ss = 0.0;
      for (int64_t i = 0; i < w.numel(); ++i) {
        ASSERT_TRUE(std::isfinite(w.data<float>()[i])) << mode;
        ss += double(w.data<float>()[i]) * w.data<float>()[i];
      }
      const double rms = std::sqrt(ss / double(w.numel()));
      EXPECT_GT(rms, 0.5 * sigma) << mode << " N=" << s.N;
      EXPECT_LT(rms, 2.0 * sigma) << mode << " N=" << s.N;
      // The kernels compute with exactly these weights.
      const Expect e = expect_for(mode == "bf16" ? "f32" : mode);
      for (int64_t M : {1, 16})
        EXPECT_LE(self_check_error(*op, ctx, r, M, e.act), e.tol) << mode << " N=" << s.N << " M=" << M;
      // Deterministic in the seed.
      const auto again = gpu::random_cuda_linear(mode, s.N, s.K, 1234, ctx, sigma);
      const auto other = gpu::random_cuda_linear(mode, s.N, s.K, 1235, ctx, sigma);
      const Tensor w2 = again->dequantized_weight(), w3 = other->dequantized_weight();
      EXPECT_EQ(0, std::memcmp(w.data<float>(), w2.data<float>(), size_t(w.numel()) * 4)) << mode;
      EXPECT_NE(0, std::memcmp(w.data<float>(), w3.data<float>(), size_t(w.numel()) * 4)) << mode;
    }
  EXPECT_THROW(gpu::random_cuda_linear("int9", 16, 128, 1, ctx), InvalidArgument);
  EXPECT_THROW(gpu::random_cuda_linear("int8", 0, 128, 1, ctx), InvalidArgument);
}

// fuse_cuda_linears: q/k/v-like groups (N 48, 16, 37: the last need not be a
// multiple of 16) fused per format; each part alone, and the fused op over the
// whole group, against the float64 reference of the original CPU op.
TEST(CudaLinearFuse, PartsAndWholeMatchTheOriginalOps) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  const int64_t K = 300;
  const std::vector<int64_t> Ns = {48, 16, 37};
  for (const std::string mode : {"f32", "int8", "int8-pt", "fp8", "fp8-pt", "fp8-e5m2", "nf4", "fp4", "int4-g128",
                                 "int4-g32-asym", "awq", "awq-g64-sym"})
    for (bool with_bias : {false, true}) {
      const Expect e = expect_for(mode);
      // AWQ: one s for the group, as quantize_model gives linears that read one input.
      const bool awq = mode != "f32" && parse_quant_mode(mode).awq;
      const Tensor awq_s = random_awq_scales(r, K);
      std::vector<std::unique_ptr<Linear>> cpu;
      std::vector<std::unique_ptr<CudaLinear>> separate;
      std::vector<const CudaLinear*> ops;
      size_t separate_bytes = 0;
      for (int64_t N : Ns) {
        cpu.push_back(make_cpu_op(r, mode, N, K, with_bias, 3.0, &awq_s));
        separate.push_back(gpu::to_cuda(*cpu.back(), ctx));
        ops.push_back(separate.back().get());
        separate_bytes += separate.back()->weight_bytes();
      }
      std::string why;
      auto parts = gpu::fuse_cuda_linears(ops, &why);
      ASSERT_EQ(parts.size(), Ns.size()) << mode << ": " << why;
      separate.clear();  // the parts must not depend on the inputs
      size_t fused_bytes = 0;
      int64_t col = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        const CudaLinear& p = *parts[i];
        EXPECT_EQ(p.format(), cpu[i]->format());
        EXPECT_EQ(p.out_features(), Ns[i]);
        EXPECT_EQ(p.in_features(), K);
        EXPECT_EQ(parts[i]->col0(), col);
        EXPECT_EQ(parts[i]->whole(), parts[0]->whole());
        EXPECT_EQ(p.bias().defined(), with_bias) << mode;
        col += Ns[i];
        fused_bytes += p.weight_bytes();
        for (int64_t M : {1, 9}) {
          const int64_t ldx = K + 3, ldy = Ns[i] + 5;
          const std::vector<uint16_t> x = random_x(r, M, K, ldx);
          EXPECT_LE(rel_l2(reference(*cpu[i], x, M, ldx, e.act), run_device(p, ctx, x, M, ldx, ldy)), e.tol)
              << mode << " part " << i << " M=" << M << " bias=" << with_bias;
        }
        // The weight read back is the part's rows of the whole (same values as the original op's readback).
        const Tensor wc = cpu[i]->dequantized_weight(), wg = p.dequantized_weight();
        ASSERT_EQ(wg.numel(), wc.numel()) << mode;
        EXPECT_LE(rel_l2(std::vector<double>(wc.data<float>(), wc.data<float>() + wc.numel()),
                         std::vector<float>(wg.data<float>(), wg.data<float>() + wg.numel())),
                  e.act != Act::BF16 ? 0.0 : kTolWeightReadback)
            << mode << " part " << i;
      }
      EXPECT_EQ(fused_bytes, parts[0]->whole()->weight_bytes());
      // Only the spare element of 4-bit scales / zeros is shared; 8-bit rows are padded per part.
      EXPECT_LE(fused_bytes, separate_bytes) << mode;
      // AWQ: the separate ops held one copy of the shared input scales each, the whole one.
      const size_t shared_scales = awq ? (Ns.size() - 1) * size_t(K) * sizeof(float) : 0;
      EXPECT_GE(fused_bytes + 64 + shared_scales, separate_bytes) << mode;
      // The whole op: one call, the parts' columns side by side.
      const int64_t M = 3, ldx = K, ldy = col + 2;
      const std::vector<uint16_t> x = random_x(r, M, K, ldx);
      const std::vector<float> got = run_device(*parts[0]->whole(), ctx, x, M, ldx, ldy);
      int64_t c0 = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::vector<double> ref = reference(*cpu[i], x, M, ldx, e.act);
        std::vector<float> cols;
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < Ns[i]; ++n) cols.push_back(got[size_t(m * col + c0 + n)]);
        EXPECT_LE(rel_l2(ref, cols), e.tol) << mode << " whole, part " << i;
        c0 += Ns[i];
      }
    }
}

TEST(CudaLinearFuse, RefusesWhatItCannotFuse) {
  KQ_GPU_REQUIRE_DEVICE();
  Rng r;
  cuda::GpuContext ctx;
  auto op = [&](const std::string& mode, int64_t N, int64_t K, bool bias) {
    return gpu::to_cuda(*make_cpu_op(r, mode, N, K, bias, 1.0), ctx);
  };
  auto refused = [&](const CudaLinear& a, const CudaLinear& b) {
    const CudaLinear* ops[] = {&a, &b};
    std::string why;
    const bool none = gpu::fuse_cuda_linears(ops, &why).empty();
    EXPECT_FALSE(why.empty());
    return none;
  };
  EXPECT_TRUE(refused(*op("int8", 32, 128, false), *op("nf4", 32, 128, false)));   // formats
  EXPECT_TRUE(refused(*op("nf4", 32, 128, false), *op("nf4", 32, 256, false)));    // K
  EXPECT_TRUE(refused(*op("int8", 32, 128, true), *op("int8", 32, 128, false)));   // bias on one only
  EXPECT_TRUE(refused(*op("f32", 40, 128, false), *op("f32", 32, 128, false)));    // first N not a multiple of 16
  EXPECT_TRUE(refused(*op("awq", 32, 256, false), *op("awq", 32, 256, false)));    // AWQ scales that differ
  const auto a = op("int4-g128", 32, 256, false), b = op("int4-g128", 16, 256, false);
  const CudaLinear* ab[] = {a.get(), b.get()};
  auto parts = gpu::fuse_cuda_linears(ab);
  ASSERT_EQ(parts.size(), 2u);
  EXPECT_TRUE(refused(*parts[0], *parts[1]));  // already fused
  const CudaLinear* one[] = {a.get()};
  EXPECT_TRUE(gpu::fuse_cuda_linears(one).empty());
}

}  // namespace
}  // namespace kq::testing
