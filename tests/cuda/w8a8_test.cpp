// End-to-end W8A8 linears (per-token activation quantization + GEMM/GEMV +
// per-channel scaling) against a float64 reference built from the host
// quantization of the same activations.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include "cuda/gpu_test_util.hpp"
#include "cuda/host_quant.hpp"
#include "cuda/tolerances.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/w8a8.hpp"
#include "kq/error.hpp"

namespace kq::testing {
namespace {

using cuda::DeviceBuffer;

struct Case {
  int64_t M, N, K;
  bool per_channel;
};

// {2, 40, 8000}: 16 warps over a long K with a partial last trip; {1, 20000,
// 1536}: 4 warps, persistent over 1250 row groups (with KQ_FP8_GEMV_TILES=4:
// the 4-tile variant); M = 9..16: the GEMV's two token halves (the second
// partial at 12 and 9; 9 x 20000: persistent).
const Case kCases[] = {{1, 1000, 333, true},    {3, 257, 4096, true},   {8, 100, 200, false},
                       {37, 300, 520, true},    {100, 64, 4096, true},  {2, 40, 8000, true},
                       {1, 20000, 1536, false}, {16, 1031, 2000, true}, {12, 300, 4096, false},
                       {9, 20000, 512, true}};

std::string name(const Case& c) {
  return "M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
         (c.per_channel ? " per-channel" : " per-tensor");
}

/// Runs `linear` on poisoned y [M, N + 5]; checks y[:, :N] against ref and that
/// the padding columns were not written.
template <class Linear>
void run_and_check(const Case& c, const std::vector<double>& ref, Linear linear, double tolerance) {
  const int64_t ldy = c.N + 5;
  DeviceBuffer<uint16_t> dy(size_t(c.M * ldy));
  dy.fill_bytes(0xFF);
  linear(dy.data(), ldy);
  KQ_CUDA_CHECK(cudaDeviceSynchronize());
  const auto y = dy.download();
  EXPECT_LE(rel_l2(ref, bf16_matrix(y, size_t(c.M), size_t(c.N), size_t(ldy))), tolerance);
  int64_t touched = 0;
  for (int64_t m = 0; m < c.M; ++m)
    for (int64_t n = c.N; n < ldy; ++n) touched += y[size_t(m * ldy + n)] != 0xFFFF;
  EXPECT_EQ(touched, 0) << "wrote outside y[:, :N]";
}

class Fp8Linear : public ::testing::TestWithParam<cuda::Fp8Path> {};

TEST_P(Fp8Linear, MatchesFloat64Reference) {
  KQ_REQUIRE_FP8();
  const cuda::Fp8Path path = GetParam();
  Rng r;
  cuda::GpuContext ctx;
  for (const Case& c : kCases) {
    if (path == cuda::Fp8Path::Gemv && c.M > cuda::kW8GemvMaxM) continue;
    SCOPED_TRACE(name(c) + " seed=" + std::to_string(r.seed));
    const int64_t ldx = c.K + 3;
    const auto x = random_bf16(r, size_t(c.M * ldx));
    const auto w8 = random_e4m3(r, size_t(c.N * c.K));
    std::vector<float> sw(c.per_channel ? size_t(c.N) : 1);
    for (auto& s : sw) s = float(r.uniform(1e-4, 1e-2));
    const cuda::Fp8Weight w = cuda::upload_fp8_weight(w8.data(), sw.data(), c.per_channel, c.N, c.K);
    DeviceBuffer<uint16_t> dx;
    dx.upload(x);

    std::vector<uint8_t> q;
    std::vector<float> sx;
    quantize_rows_fp8_ref(x, c.M, c.K, ldx, q, sx);
    std::vector<double> wf(w8.size());
    for (size_t i = 0; i < w8.size(); ++i) wf[i] = e4m3_to_f32(w8[i]);
    std::vector<double> ref(size_t(c.M * c.N));
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < c.K; ++k) acc += double(e4m3_to_f32(q[size_t(m * c.K + k)])) * wf[size_t(n * c.K + k)];
        ref[size_t(m * c.N + n)] = acc * sx[size_t(m)] * sw[c.per_channel ? size_t(n) : 0];
      }
    try {
      run_and_check(c, ref, [&](uint16_t* y, int64_t ldy) { cuda::fp8_w8a8_linear(ctx, w, dx.data(), ldx, c.M, y, ldy, path); },
                    tol::kFp8Gemm);
    } catch (const Unsupported& e) {
      if (path != cuda::Fp8Path::Fused) throw;
      GTEST_SKIP() << "fused rowwise FP8 not offered by this cuBLASLt: " << e.what();
    }
  }
}

INSTANTIATE_TEST_SUITE_P(Paths, Fp8Linear,
                         ::testing::Values(cuda::Fp8Path::Auto, cuda::Fp8Path::Gemv, cuda::Fp8Path::Fused,
                                           cuda::Fp8Path::Epilogue),
                         [](const auto& p) {
                           switch (p.param) {
                             case cuda::Fp8Path::Auto: return std::string("Auto");
                             case cuda::Fp8Path::Gemv: return std::string("Gemv");
                             case cuda::Fp8Path::Fused: return std::string("Fused");
                             case cuda::Fp8Path::Epilogue: return std::string("Epilogue");
                           }
                           return std::string("Unknown");
                         });

TEST(Int8Linear, MatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  Rng r;
  cuda::GpuContext ctx;
  for (const Case& c : kCases) {
    SCOPED_TRACE(name(c) + " seed=" + std::to_string(r.seed));
    const int64_t ldx = c.K + 3;
    const auto x = random_bf16(r, size_t(c.M * ldx));
    std::vector<int8_t> w8(size_t(c.N * c.K));
    for (auto& v : w8) v = int8_t(r.integer(-127, 127));
    std::vector<float> sw(c.per_channel ? size_t(c.N) : 1);
    for (auto& s : sw) s = float(r.uniform(1e-4, 1e-2));
    const cuda::Int8Weight w = cuda::upload_int8_weight(w8.data(), sw.data(), c.per_channel, c.N, c.K);
    DeviceBuffer<uint16_t> dx;
    dx.upload(x);
    std::vector<int8_t> q;
    std::vector<float> sx;
    quantize_rows_int8_ref(x, c.M, c.K, ldx, q, sx);
    std::vector<double> ref(size_t(c.M * c.N));
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        int64_t acc = 0;
        for (int64_t k = 0; k < c.K; ++k) acc += int64_t(q[size_t(m * c.K + k)]) * w8[size_t(n * c.K + k)];
        ref[size_t(m * c.N + n)] = double(acc) * sx[size_t(m)] * sw[c.per_channel ? size_t(n) : 0];
      }
    run_and_check(c, ref, [&](uint16_t* y, int64_t ldy) { cuda::int8_w8a8_linear(ctx, w, dx.data(), ldx, c.M, y, ldy); },
                  tol::kInt8Gemm);
  }
}

TEST(W8A8, RejectsBadArguments) {
  const std::vector<uint8_t> codes(16, 0x38);
  const float scale = 1.0f, bad_scale = -1.0f;
  EXPECT_THROW(cuda::upload_fp8_weight(codes.data(), &scale, false, 0, 16), InvalidArgument);
  EXPECT_THROW(cuda::upload_fp8_weight(codes.data(), &bad_scale, false, 1, 16), InvalidArgument);
  KQ_REQUIRE_FP8();
  cuda::GpuContext ctx;
  const cuda::Fp8Weight w = cuda::upload_fp8_weight(codes.data(), &scale, false, 1, 16);
  DeviceBuffer<uint16_t> b(17 * 16);
  EXPECT_THROW(cuda::fp8_w8a8_linear(ctx, w, b.data(), 16, 17, b.data(), 1, cuda::Fp8Path::Gemv),
               InvalidArgument);
  EXPECT_THROW(cuda::fp8_w8a8_linear(ctx, w, b.data(), 8, 1, b.data(), 1), InvalidArgument);
}

}  // namespace
}  // namespace kq::testing
#endif  // KQ_WITH_CUDA
