// cuBLASLt GEMMs (BF16, FP8 E4M3 per-tensor / rowwise / FP32-out, INT8) against
// float64 / exact integer references on fresh random operands.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include <tuple>

#include "cuda/gpu_test_util.hpp"
#include "cuda/tolerances.hpp"
#include "kernels/cuda/gemm_lt.hpp"
#include "kq/error.hpp"

namespace kq::testing {
namespace {

using cuda::DeviceBuffer;

struct Shape {
  int64_t M, N, K;
};

std::string name(const Shape& s) {
  return "M=" + std::to_string(s.M) + " N=" + std::to_string(s.N) + " K=" + std::to_string(s.K);
}

TEST(GemmLt, Bf16MatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  Rng r;
  cuda::GpuContext ctx;
  for (const Shape s : {Shape{1, 1, 1}, Shape{5, 37, 19}, Shape{64, 96, 128}, Shape{33, 257, 1000},
                        Shape{128, 512, 4096}}) {
    SCOPED_TRACE(name(s) + " seed=" + std::to_string(r.seed));
    const auto x = random_bf16(r, size_t(s.M * s.K)), w = random_bf16(r, size_t(s.N * s.K));
    DeviceBuffer<uint16_t> dx, dw, dy(size_t(s.M * s.N));
    dx.upload(x);
    dw.upload(w);
    dy.fill_bytes(0xFF);  // NaN poison: unwritten outputs fail
    cuda::gemm_bf16(ctx, dx.data(), s.K, dw.data(), s.K, dy.data(), s.N, s.M, s.N, s.K);
    std::vector<double> ref(size_t(s.M * s.N));
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < s.K; ++k) acc += double(bf16f(x[m * s.K + k])) * bf16f(w[n * s.K + k]);
        ref[size_t(m * s.N + n)] = acc;
      }
    EXPECT_LE(rel_l2(ref, bf16_matrix(dy.download(), s.M, s.N, s.N)), tol::kBf16Gemm);
  }
}

/// Reference for FP8 GEMMs: y[m, n] = sx(m) · sw(n) · Σ x8·w8 in float64.
std::vector<double> fp8_ref(const std::vector<uint8_t>& x8, const std::vector<uint8_t>& w8, const Shape& s,
                            const std::vector<float>& sx, const std::vector<float>& sw) {
  std::vector<double> xf(x8.size()), wf(w8.size());
  for (size_t i = 0; i < x8.size(); ++i) xf[i] = e4m3_to_f32(x8[i]);
  for (size_t i = 0; i < w8.size(); ++i) wf[i] = e4m3_to_f32(w8[i]);
  std::vector<double> ref(size_t(s.M * s.N));
  for (int64_t m = 0; m < s.M; ++m)
    for (int64_t n = 0; n < s.N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < s.K; ++k) acc += xf[size_t(m * s.K + k)] * wf[size_t(n * s.K + k)];
      const double a = sx.size() == 1 ? sx[0] : sx[size_t(m)];
      const double b = sw.size() == 1 ? sw[0] : sw[size_t(n)];
      ref[size_t(m * s.N + n)] = acc * a * b;
    }
  return ref;
}

std::vector<float> random_scales(Rng& r, size_t n) {
  std::vector<float> v(n);
  for (auto& e : v) e = float(r.uniform(1e-3, 2e-2));
  return v;
}

class GemmFp8 : public ::testing::TestWithParam<cuda::Fp8Scaling> {};

TEST_P(GemmFp8, MatchesFloat64Reference) {
  KQ_REQUIRE_FP8();
  const cuda::Fp8Scaling scaling = GetParam();
  const bool rowwise = scaling == cuda::Fp8Scaling::Rowwise;
  Rng r;
  cuda::GpuContext ctx;
  for (const Shape s : {Shape{16, 32, 64}, Shape{48, 160, 1024}, Shape{200, 512, 4096}}) {
    SCOPED_TRACE(name(s) + " seed=" + std::to_string(r.seed));
    const auto x8 = random_e4m3(r, size_t(s.M * s.K)), w8 = random_e4m3(r, size_t(s.N * s.K));
    const auto sx = random_scales(r, rowwise ? size_t(s.M) : 1), sw = random_scales(r, rowwise ? size_t(s.N) : 1);
    DeviceBuffer<uint8_t> dx, dw;
    DeviceBuffer<float> dsx, dsw;
    DeviceBuffer<uint16_t> dy(size_t(s.M * s.N));
    dx.upload(x8);
    dw.upload(w8);
    dsx.upload(sx);
    dsw.upload(sw);
    dy.fill_bytes(0xFF);
    if (rowwise && !cuda::gemm_fp8_rowwise_supported(ctx, dx.data(), s.K, dw.data(), s.K, dy.data(), s.N, s.M, s.N,
                                                      s.K, dsw.data(), dsx.data()))
      GTEST_SKIP() << "cuBLASLt " << get_fp8_info().cublaslt_version
                   << " has no fused OUTER_VEC_32F FP8 algorithm here (the epilogue path covers it)";
    cuda::gemm_fp8(ctx, dx.data(), s.K, dw.data(), s.K, dy.data(), s.N, s.M, s.N, s.K, scaling, dsw.data(),
                   dsx.data());
    EXPECT_LE(rel_l2(fp8_ref(x8, w8, s, sx, sw), bf16_matrix(dy.download(), s.M, s.N, s.N)), tol::kFp8Gemm);
  }
}

INSTANTIATE_TEST_SUITE_P(Scaling, GemmFp8, ::testing::Values(cuda::Fp8Scaling::PerTensor, cuda::Fp8Scaling::Rowwise),
                         [](const auto& p) {
                           return std::string(p.param == cuda::Fp8Scaling::Rowwise ? "Rowwise" : "PerTensor");
                         });

TEST(GemmLt, Fp8Float32OutputMatchesReference) {
  KQ_REQUIRE_FP8();
  Rng r;
  cuda::GpuContext ctx;
  const Shape s{32, 48, 256};
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const auto x8 = random_e4m3(r, size_t(s.M * s.K)), w8 = random_e4m3(r, size_t(s.N * s.K));
  DeviceBuffer<uint8_t> dx, dw;
  DeviceBuffer<float> dd(size_t(s.M * s.N));
  dx.upload(x8);
  dw.upload(w8);
  dd.fill_bytes(0xFF);
  cuda::gemm_fp8_f32(ctx, dx.data(), s.K, dw.data(), s.K, dd.data(), s.N, s.M, s.N, s.K);
  // FP32 output: only the accumulation differs (Hopper FP8 tensor cores add with
  // reduced precision between FP32 promotions), far below BF16 rounding.
  EXPECT_LE(rel_l2(fp8_ref(x8, w8, s, {1.0f}, {1.0f}), dd.download()), 5e-4);
}

TEST(GemmLt, Int8IsExact) {
  KQ_REQUIRE_GPU();
  Rng r;
  cuda::GpuContext ctx;
  for (const Shape s : {Shape{16, 32, 64}, Shape{48, 160, 1024}, Shape{256, 512, 4096}}) {
    SCOPED_TRACE(name(s) + " seed=" + std::to_string(r.seed));
    std::vector<int8_t> x(size_t(s.M * s.K)), w(size_t(s.N * s.K));
    for (auto& v : x) v = int8_t(r.integer(-127, 127));
    for (auto& v : w) v = int8_t(r.integer(-127, 127));
    DeviceBuffer<int8_t> dx, dw;
    DeviceBuffer<int32_t> dd(size_t(s.M * s.N));
    dx.upload(x);
    dw.upload(w);
    dd.fill_bytes(0x7F);  // 0x7F7F7F7F: an accumulator value random data cannot reach
    cuda::gemm_int8(ctx, dx.data(), s.K, dw.data(), s.K, dd.data(), s.N, s.M, s.N, s.K);
    const auto got = dd.download();
    int64_t wrong = 0;
    for (int64_t m = 0; m < s.M; ++m)
      for (int64_t n = 0; n < s.N; ++n) {
        int64_t acc = 0;
        for (int64_t k = 0; k < s.K; ++k) acc += int64_t(x[size_t(m * s.K + k)]) * w[size_t(n * s.K + k)];
        wrong += acc != got[size_t(m * s.N + n)];
      }
    EXPECT_EQ(wrong, 0);
  }
}

TEST(GemmLt, RejectsBadShapes) {
  KQ_REQUIRE_GPU();
  cuda::GpuContext ctx;
  DeviceBuffer<uint16_t> b(64);
  EXPECT_THROW(cuda::gemm_bf16(ctx, b.data(), 8, b.data(), 8, b.data(), 8, 0, 8, 8), InvalidArgument);
  EXPECT_THROW(cuda::gemm_bf16(ctx, b.data(), 4, b.data(), 8, b.data(), 8, 1, 8, 8), InvalidArgument);
}

}  // namespace
}  // namespace kq::testing
#endif  // KQ_WITH_CUDA
