// W4A16 (NF4, FP4 E2M1, bitsandbytes FP4, INT4, INT4 asymmetric): the decode GEMV, the BF16
// dequantization and the prefill paths (fused GEMM, dequantize + cuBLASLt) against float64 / exact host references
// on fresh random weights, odd shapes and every block size.
#ifdef KQ_WITH_CUDA
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include "cuda/gpu_test_util.hpp"
#include "cuda/tolerances.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/model_ops.hpp"
#include "kernels/cuda/w4a16.hpp"
#include "kq/error.hpp"

namespace kq::testing {
namespace {

using cuda::DeviceBuffer;
using cuda::W4Format;

/// A random 4-bit weight in unpacked host form.
struct HostW4 {
  W4Format format;
  int64_t N, K;
  int block;
  std::vector<uint8_t> codes;  // [N, K]
  std::vector<float> scales;   // [N, nblk]
  std::vector<float> zeros;    // [N, nblk] (INT4Asym)
  int64_t nblk() const { return (K + block - 1) / block; }
  /// w[n, k] in float64 from the caller's FP32 scales.
  double value(int64_t n, int64_t k) const {
    const auto cb = cuda::w4_codebook(format);
    const size_t b = size_t(n * nblk() + k / block);
    const double z = zeros.empty() ? 0.0 : zeros[b];
    return (double(cb[codes[size_t(n * K + k)]]) - z) * scales[b];
  }
};

HostW4 random_w4(Rng& r, W4Format f, int64_t N, int64_t K, int block) {
  HostW4 h{f, N, K, block, {}, {}, {}};
  h.codes.resize(size_t(N * K));
  for (auto& c : h.codes) c = uint8_t(r.integer(0, 15));
  h.scales.resize(size_t(N * h.nblk()));
  for (auto& s : h.scales) s = float(r.uniform(0.005, 0.05));
  if (f == W4Format::INT4Asym) {
    h.zeros.resize(h.scales.size());
    for (auto& z : h.zeros) z = float(r.integer(0, 15));
  }
  return h;
}

cuda::W4Weight upload(const HostW4& h) {
  return cuda::upload_w4_weight(h.format, h.N, h.K, h.block, h.codes.data(), h.scales.data(),
                                h.zeros.empty() ? nullptr : h.zeros.data());
}

std::vector<double> reference(const HostW4& h, const std::vector<uint16_t>& x, int64_t M, int64_t ldx) {
  std::vector<double> wd(size_t(h.N * h.K));
  for (int64_t n = 0; n < h.N; ++n)
    for (int64_t k = 0; k < h.K; ++k) wd[size_t(n * h.K + k)] = h.value(n, k);
  std::vector<double> ref(size_t(M * h.N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < h.N; ++n) {
      double acc = 0;
      for (int64_t k = 0; k < h.K; ++k) acc += double(bf16f(x[size_t(m * ldx + k)])) * wd[size_t(n * h.K + k)];
      ref[size_t(m * h.N + n)] = acc;
    }
  return ref;
}

/// Float64 reference from the weights the prefill GEMM multiplies: each w[n, k]
/// rounded once to BF16 from FP32 (cb[q] − z) · s with the device's BF16 scales
/// and zero points, as w4_dequantize_bf16 gives it.
std::vector<double> reference_bf16_weights(const HostW4& h, const std::vector<uint16_t>& x, int64_t M, int64_t ldx) {
  const auto cb = cuda::w4_codebook(h.format);
  std::vector<double> wd(size_t(h.N * h.K));
  for (int64_t n = 0; n < h.N; ++n)
    for (int64_t k = 0; k < h.K; ++k) {
      const size_t b = size_t(n * h.nblk() + k / h.block);
      const float s = bf16f(f32_to_bf16(h.scales[b]));
      const float z = h.zeros.empty() ? 0.0f : bf16f(f32_to_bf16(h.zeros[b]));
      wd[size_t(n * h.K + k)] = bf16f(f32_to_bf16((cb[h.codes[size_t(n * h.K + k)]] - z) * s));
    }
  std::vector<double> ref(size_t(M * h.N));
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < h.N; ++n) {
      double acc = 0;
      const double* wr = wd.data() + n * h.K;
      const uint16_t* xr = x.data() + m * ldx;
      for (int64_t k = 0; k < h.K; ++k) acc += double(bf16f(xr[k])) * wr[k];
      ref[size_t(m * h.N + n)] = acc;
    }
  return ref;
}

struct Case {
  int64_t M, N, K, ldx;
  int block;
};

// Odd N and K (partial row groups, partial tiles and blocks), ldx with and
// without 16-byte row alignment, M = 1..16 (two token halves above 8), every block size. Every case has
// hundreds of products or more: with a handful, one output's cancellation
// would make a relative error meaningless.
const Case kGemvCases[] = {{1, 64, 7, 7, 32},        {1, 37, 300, 304, 64},  {2, 100, 1000, 1000, 128},
                           {3, 257, 4096, 4099, 64}, {5, 64, 129, 136, 256}, {8, 515, 2112, 2112, 32},
                           {4, 4096, 1024, 1024, 128}, {1, 1031, 11008, 11008, 64}, {9, 77, 1500, 1501, 32},
                           {16, 300, 4096, 4096, 128}, {12, 33, 640, 644, 256}};

class W4A16 : public ::testing::TestWithParam<W4Format> {};

TEST_P(W4A16, GemvMatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  Rng r;
  for (const Case& c : kGemvCases) {
    SCOPED_TRACE("M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
                 " ldx=" + std::to_string(c.ldx) + " block=" + std::to_string(c.block) +
                 " seed=" + std::to_string(r.seed));
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
    const cuda::W4Weight w = upload(h);
    const auto x = random_bf16(r, size_t(c.M * c.ldx));
    DeviceBuffer<uint16_t> dx, dy(size_t(c.M * c.N));
    dx.upload(x);
    dy.fill_bytes(0xFF);
    cuda::w4a16_gemv(w, dx.data(), c.ldx, c.M, dy.data(), c.N, nullptr);
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_LE(rel_l2(reference(h, x, c.M, c.ldx), bf16_matrix(dy.download(), size_t(c.M), size_t(c.N), size_t(c.N))),
              tol::kW4Gemv);
  }
}

TEST_P(W4A16, EveryLaunchVariantMatchesReference) {
  KQ_REQUIRE_GPU();
  Rng r;
  const Case c{3, 273, 4160, 4160, 64};  // partial row group and tile; some warps idle at 16 warps
  const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
  const cuda::W4Weight w = upload(h);
  const auto x = random_bf16(r, size_t(c.M * c.ldx));
  const auto ref = reference(h, x, c.M, c.ldx);
  DeviceBuffer<uint16_t> dx, dy(size_t(c.M * c.N));
  dx.upload(x);
  for (const auto& [warps, tiles] : {std::pair{4, 0}, std::pair{8, 0}, std::pair{8, 2}, std::pair{16, 4}, std::pair{16, 2}}) {
    SCOPED_TRACE("warps=" + std::to_string(warps) + " tiles=" + std::to_string(tiles) +
                 " seed=" + std::to_string(r.seed));
    dy.fill_bytes(0xFF);
    cuda::w4a16_gemv(w, dx.data(), c.ldx, c.M, dy.data(), c.N, nullptr, {warps, tiles, 1});
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_LE(rel_l2(ref, bf16_matrix(dy.download(), size_t(c.M), size_t(c.N), size_t(c.N))), tol::kW4Gemv);
  }
}

/// The streaming kernel for M = 1 (one block per SM, rows split evenly,
/// partial 8-row groups, pairs of tiles with an odd tile count, x staged in
/// shared memory): every variant, the automatic choice (3001 x 11008 is large
/// enough to take it), odd shapes, all block sizes, x with and without 8-byte
/// alignment, and the split-K kernel at M = 1 for comparison.
TEST_P(W4A16, StreamKernelVariantsMatchReference) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct StreamCase {
    int64_t N, K;
    int block;
    int64_t x_offset;  // elements: 1 = x only 2-byte aligned
  };
  const StreamCase cases[] = {{37, 300, 64, 0},   {3001, 11008, 64, 1}, {515, 2112, 32, 0}, {300, 4096, 128, 1},
                              {33, 640, 256, 0},  {2500, 1000, 32, 0},  {4096, 515, 128, 0}, {7, 1300, 64, 1}};
  const cuda::W4GemvTuning variants[] = {{0, 0, 0},  {0, 0, 2},  {16, 4, 2}, {20, 3, 2},
                                         {24, 2, 2}, {24, 3, 2}, {32, 2, 2}, {8, 4, 1}};
  for (const StreamCase& c : cases) {
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
    const cuda::W4Weight w = upload(h);
    const auto xall = random_bf16(r, size_t(c.K + c.x_offset));
    const std::vector<uint16_t> x(xall.begin() + c.x_offset, xall.end());
    const auto ref = reference(h, x, 1, c.K);
    DeviceBuffer<uint16_t> dx, dy(size_t(c.N));
    dx.upload(xall);
    for (const cuda::W4GemvTuning& v : variants) {
      SCOPED_TRACE("N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " block=" + std::to_string(c.block) +
                   " x_offset=" + std::to_string(c.x_offset) + " warps=" + std::to_string(v.warps) +
                   " tiles=" + std::to_string(v.tiles) + " kernel=" + std::to_string(v.kernel) +
                   " seed=" + std::to_string(r.seed));
      dy.fill_bytes(0xFF);
      cuda::w4a16_gemv(w, dx.data() + c.x_offset, c.K, 1, dy.data(), c.N, nullptr, v);
      KQ_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_LE(rel_l2(ref, bf16_matrix(dy.download(), 1, size_t(c.N), size_t(c.N))), tol::kW4Gemv);
    }
  }
}

/// Inputs of any magnitude BF16 holds (2^-100 .. 2^90 times N(0, 1), far
/// outside FP16's range), and tiles whose values span 2^24 (a few huge values
/// among ordinary ones), keep the float64 reference's relative accuracy on the
/// streaming kernel and the automatic choice (a guard for any kernel that
/// stages x in a narrower type or offsets the codes before the mma).
TEST_P(W4A16, StreamKernelKeepsPrecisionAtAnyInputScale) {
  KQ_REQUIRE_GPU();
  Rng r;
  const int64_t N = 3001, K = 4160;
  const HostW4 h = random_w4(r, GetParam(), N, K, 64);
  const cuda::W4Weight w = upload(h);
  const auto base = random_bf16(r, size_t(K));
  for (const int e2 : {-100, -24, 0, 17, 90}) {
    for (const bool spread : {false, true}) {
      SCOPED_TRACE("x scaled by 2^" + std::to_string(e2) + (spread ? ", every 61st value x 2^24" : "") +
                   " seed=" + std::to_string(r.seed));
      std::vector<uint16_t> x(base.size());
      for (size_t k = 0; k < x.size(); ++k)
        x[k] = f32_to_bf16(std::ldexp(bf16f(base[k]), e2 + (spread && k % 61 == 0 ? 24 : 0)));
      const auto ref = reference(h, x, 1, K);
      DeviceBuffer<uint16_t> dx, dy(static_cast<size_t>(N));
      dx.upload(x);
      for (const cuda::W4GemvTuning& v : {cuda::W4GemvTuning{0, 0, 2}, cuda::W4GemvTuning{0, 0, 0}}) {
        dy.fill_bytes(0xFF);
        cuda::w4a16_gemv(w, dx.data(), K, 1, dy.data(), N, nullptr, v);
        KQ_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_LE(rel_l2(ref, bf16_matrix(dy.download(), 1, size_t(N), size_t(N))), tol::kW4Gemv)
            << "kernel=" << v.kernel;
      }
    }
  }
}

/// The batch kernel (M >= 2 by default; one block per SM, 16-row groups in
/// passes of up to 3 or 4, warps splitting K, x tiles double-buffered in
/// shared memory): every M from 1 to 16 (one and two token halves), its three
/// warp configurations, blocks with several passes (N large against the SMs)
/// and with one partial group, warps with no tile (K of one or two tiles),
/// x rows unaligned or with odd ldx, every block size; and the same bits on
/// a second run (the warps' partial sums are added in a fixed order).
TEST_P(W4A16, BatchKernelMatchesReferenceAtEveryM) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct BatchCase {
    int64_t N, K, ldx, x_offset;
    int block;
  };
  const BatchCase cases[] = {{6000, 1000, 1000, 0, 64}, {300, 4096, 4099, 0, 128},   {37, 300, 304, 1, 32},
                             {13000, 256, 256, 0, 256}, {1031, 11008, 11008, 0, 64}, {515, 129, 136, 0, 32},
                             {2000, 4100, 4104, 0, 128}};
  for (const BatchCase& c : cases) {
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
    const cuda::W4Weight w = upload(h);
    for (const int64_t M : {1, 2, 3, 7, 8, 9, 13, 16}) {
      if (c.N * c.K > 4'000'000 && M != 2 && M != 16) continue;  // the float64 reference's cost
      const auto xall = random_bf16(r, size_t(M * c.ldx + c.x_offset));
      const std::vector<uint16_t> x(xall.begin() + c.x_offset, xall.end());
      const auto ref = reference(h, x, M, c.ldx);
      DeviceBuffer<uint16_t> dx, dy(size_t(M * c.N));
      dx.upload(xall);
      for (const int warps : {0, 8, 12, 16}) {
        SCOPED_TRACE("M=" + std::to_string(M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
                     " ldx=" + std::to_string(c.ldx) + " x_offset=" + std::to_string(c.x_offset) +
                     " block=" + std::to_string(c.block) + " warps=" + std::to_string(warps) +
                     " seed=" + std::to_string(r.seed));
        dy.fill_bytes(0xFF);
        cuda::w4a16_gemv(w, dx.data() + c.x_offset, c.ldx, M, dy.data(), c.N, nullptr, {warps, 0, 3});
        KQ_CUDA_CHECK(cudaDeviceSynchronize());
        const auto first = dy.download();
        EXPECT_LE(rel_l2(ref, bf16_matrix(first, size_t(M), size_t(c.N), size_t(c.N))), tol::kW4Gemv);
        dy.fill_bytes(0xFF);
        cuda::w4a16_gemv(w, dx.data() + c.x_offset, c.ldx, M, dy.data(), c.N, nullptr, {warps, 0, 3});
        KQ_CUDA_CHECK(cudaDeviceSynchronize());
        EXPECT_EQ(first, dy.download());
      }
    }
  }
}

/// The SwiGLU folded into the streaming GEMV's staging gives the same bits
/// as the SwiGLU kernel followed by the same GEMV (odd K, unaligned rows).
TEST_P(W4A16, SwigluFoldedIntoTheGemvEqualsSwigluThenGemv) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct SwigluCase {
    int64_t N, K, offset;
  };
  for (const SwigluCase& c :
       {SwigluCase{3001, 11008, 0}, SwigluCase{37, 300, 1}, SwigluCase{515, 2112, 0}, SwigluCase{4096, 515, 1}}) {
    SCOPED_TRACE("N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " seed=" + std::to_string(r.seed));
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, 64);
    const cuda::W4Weight w = upload(h);
    const auto gate = random_bf16(r, size_t(c.K + c.offset), 2.0), upv = random_bf16(r, size_t(c.K + c.offset), 2.0);
    DeviceBuffer<uint16_t> dg, dh, du, y1(size_t(c.N)), y2(size_t(c.N));
    dg.upload(gate);
    dh.upload(gate);
    du.upload(upv);
    y1.fill_bytes(0xFF);
    y2.fill_bytes(0xFF);
    const uint16_t* g = dg.data() + c.offset;
    const uint16_t* u = du.data() + c.offset;
    cuda::swiglu(dh.data() + c.offset, c.K, u, c.K, dh.data() + c.offset, c.K, 1, c.K, nullptr);
    cuda::w4a16_gemv(w, dh.data() + c.offset, c.K, 1, y1.data(), c.N, nullptr, cuda::W4GemvTuning{0, 0, 2});
    ASSERT_TRUE(cuda::w4a16_gemv_swiglu(w, g, u, y2.data(), nullptr));
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    EXPECT_EQ(y1.download(), y2.download());
    EXPECT_EQ(dg.download(), gate);  // the gate is only read
  }
}

/// The RMSNorm (with its residual add) folded into the streaming GEMV's
/// staging gives the same bits as model_ops' rms_norm followed by the same
/// GEMV, writes back the same residual, and leaves its counter at 0, launch
/// after launch; shapes it cannot take are refused with nothing written.
TEST_P(W4A16, RmsNormFoldedIntoTheGemvEqualsNormThenGemv) {
  KQ_REQUIRE_GPU();
  Rng r;
  struct NormCase {
    int64_t N, K;
    bool add, x_scale;
  };
  for (const NormCase& c : {NormCase{3001, 4096, true, false}, NormCase{515, 2112, false, false},
                            NormCase{37, 300, true, false}, NormCase{77, 16384, true, false},
                            NormCase{1200, 11008, true, true}, NormCase{4096, 516, false, true}}) {
    SCOPED_TRACE("N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " add=" + std::to_string(c.add) +
                 " x_scale=" + std::to_string(c.x_scale) + " seed=" + std::to_string(r.seed));
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, 64);
    cuda::W4Weight w = upload(h);
    if (c.x_scale) {
      std::vector<float> xs(size_t(c.K));
      for (auto& v : xs) v = float(std::exp2(r.uniform(-2.0, 2.0)));
      cuda::set_w4_input_scale(w, xs.data());
    }
    std::vector<float> resid(size_t(c.K)), gamma(size_t(c.K));
    for (auto& v : resid) v = float(r.uniform(-3.0, 3.0));
    for (auto& v : gamma) v = float(r.uniform(0.5, 1.5));
    const auto add = random_bf16(r, size_t(c.K), 2.0);
    DeviceBuffer<float> x1, x2, dg;
    DeviceBuffer<uint16_t> da, hbuf(size_t(c.K)), y1(size_t(c.N)), y2(size_t(c.N));
    DeviceBuffer<unsigned> counter(1);
    x1.upload(resid);
    x2.upload(resid);
    dg.upload(gamma);
    da.upload(add);
    counter.fill_bytes(0);
    const uint16_t* a = c.add ? da.data() : nullptr;
    const cuda::W4RmsNormInput in{x2.data(), a, dg.data(), 1e-5f, counter.data()};
    for (int launch = 0; launch < 3; ++launch) {  // the residual grows by add each time
      y1.fill_bytes(0xFF);
      y2.fill_bytes(0xFF);
      cuda::rms_norm(x1.data(), a, c.K, dg.data(), 1e-5f, hbuf.data(), c.K, 1, c.K, nullptr);
      cuda::w4a16_gemv(w, hbuf.data(), c.K, 1, y1.data(), c.N, nullptr, cuda::W4GemvTuning{0, 0, 2});
      ASSERT_TRUE(cuda::w4a16_gemv_rms_norm(w, in, y2.data(), nullptr));
      KQ_CUDA_CHECK(cudaDeviceSynchronize());
      EXPECT_EQ(y1.download(), y2.download()) << "launch " << launch;
      EXPECT_EQ(x1.download(), x2.download()) << "launch " << launch;
      EXPECT_EQ(counter.download(), std::vector<unsigned>{0u});
    }
  }
  // K % 4 != 0 (the norm's scalar path) and misaligned pointers: refused, nothing written.
  const HostW4 h = random_w4(r, GetParam(), 64, 302, 64);
  const cuda::W4Weight w = upload(h);
  const std::vector<float> resid(308, 1.0f);
  DeviceBuffer<float> dx, dg;
  DeviceBuffer<uint16_t> da, dy(64);
  DeviceBuffer<unsigned> counter(1);
  dx.upload(resid);
  dg.upload(resid);
  da.upload(random_bf16(r, 308));
  dy.fill_bytes(0xFF);
  counter.fill_bytes(0);
  EXPECT_FALSE(cuda::w4a16_gemv_rms_norm(w, {dx.data(), da.data(), dg.data(), 1e-5f, counter.data()}, dy.data(),
                                         nullptr));
  const HostW4 h4 = random_w4(r, GetParam(), 64, 304, 64);
  const cuda::W4Weight w4 = upload(h4);
  EXPECT_FALSE(cuda::w4a16_gemv_rms_norm(w4, {dx.data() + 1, da.data(), dg.data(), 1e-5f, counter.data()},
                                         dy.data(), nullptr));
  EXPECT_FALSE(cuda::w4a16_gemv_rms_norm(w4, {dx.data(), da.data() + 1, dg.data(), 1e-5f, counter.data()},
                                         dy.data(), nullptr));
  EXPECT_THROW(cuda::w4a16_gemv_rms_norm(w4, {dx.data(), da.data(), dg.data(), 1e-5f, nullptr}, dy.data(), nullptr),
               InvalidArgument);
  EXPECT_THROW(cuda::w4a16_gemv_rms_norm(w4, {nullptr, nullptr, dg.data(), 1e-5f, nullptr}, dy.data(), nullptr),
               InvalidArgument);
  KQ_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(dx.download(), resid);
  EXPECT_EQ(dy.download(), std::vector<uint16_t>(64, 0xFFFF));
}

TEST_P(W4A16, DequantizeIsExactFromDeviceScales) {
  KQ_REQUIRE_GPU();
  Rng r;
  // (K, ldo, block, input scales): element stores (ldo % 8 != 0), 16-byte stores with a partial last run,
  // several 1024-k segments per row, every block size, AWQ's input scales.
  struct DequantCase {
    int64_t K, ldo;
    int block;
    bool x_scale;
  };
  const DequantCase cases[] = {{333, 340, 64, false}, {333, 336, 32, false}, {1283, 1288, 128, false},
                        {2048, 2048, 256, false}, {1100, 1104, 64, true}, {301, 305, 128, true}};
  for (const DequantCase& c : cases) {
    const HostW4 h = random_w4(r, GetParam(), 77, c.K, c.block);
    SCOPED_TRACE("K=" + std::to_string(c.K) + " ldo=" + std::to_string(c.ldo) + " block=" +
                 std::to_string(c.block) + " x_scale=" + std::to_string(c.x_scale) + " seed=" + std::to_string(r.seed));
    cuda::W4Weight w = upload(h);
    std::vector<float> xs;
    if (c.x_scale) {
      for (int64_t k = 0; k < c.K; ++k) xs.push_back(float(std::exp2(r.uniform(-3.0, 3.0))));
      cuda::set_w4_input_scale(w, xs.data());
    }
    DeviceBuffer<uint16_t> out(size_t(h.N * c.ldo));
    out.fill_bytes(0xFF);
    cuda::w4_dequantize_bf16(w, out.data(), c.ldo, nullptr);
    const auto got = out.download();
    const auto cb = cuda::w4_codebook(h.format);
    int64_t wrong = 0, touched = 0;
    for (int64_t n = 0; n < h.N; ++n) {
      for (int64_t k = 0; k < h.K; ++k) {
        // The device holds scales and zeros in BF16: BF16((cb[q] - z) * s [* x_scale]) in FP32.
        const size_t b = size_t(n * h.nblk() + k / h.block);
        const float s = bf16f(f32_to_bf16(h.scales[b]));
        const float z = h.zeros.empty() ? 0.0f : bf16f(f32_to_bf16(h.zeros[b]));
        float v = (cb[h.codes[size_t(n * h.K + k)]] - z) * s;
        if (c.x_scale) v *= xs[size_t(k)];
        wrong += got[size_t(n * c.ldo + k)] != f32_to_bf16(v);
      }
      for (int64_t k = h.K; k < c.ldo; ++k) touched += got[size_t(n * c.ldo + k)] != 0xFFFF;
    }
    EXPECT_EQ(wrong, 0);
    EXPECT_EQ(touched, 0);
  }
}

TEST_P(W4A16, PackedUploadEqualsUnpacked) {
  KQ_REQUIRE_GPU();
  Rng r;
  const int64_t N = 9, K = 301;  // odd K: the last byte of a packed row is half padding
  const HostW4 h = random_w4(r, GetParam(), N, K, 32);
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const int64_t row_bytes = (K + 1) / 2;
  std::vector<uint8_t> packed(size_t(N * row_bytes), 0);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k)
      packed[size_t(n * row_bytes + k / 2)] |= uint8_t(h.codes[size_t(n * K + k)] << (4 * (k & 1)));
  std::vector<uint8_t> zeros_u8(h.zeros.size());
  for (size_t i = 0; i < h.zeros.size(); ++i) zeros_u8[i] = uint8_t(h.zeros[i]);
  const cuda::W4Weight a = upload(h);
  const cuda::W4Weight b = cuda::upload_w4_weight_packed(h.format, N, K, 32, packed.data(), h.scales.data(),
                                                         h.zeros.empty() ? nullptr : zeros_u8.data());
  EXPECT_EQ(a.codes.download(), b.codes.download());
  EXPECT_EQ(a.scales.download(), b.scales.download());
  EXPECT_EQ(a.zeros.download(), b.zeros.download());
}

/// Fused GEMM and dequantize + cuBLASLt paths of w4a16_linear, and w4a16_gemm
/// itself: M, N, K not multiples of the 128 x 128 x 64 tiles, every block size,
/// aligned and unaligned activation rows, output rows wider than N whose
/// padding must stay untouched.
struct PrefillCase {
  int64_t M, N, K, ldx, ldy;
  int block;
};
const PrefillCase kPrefillCases[] = {
    {17, 130, 515, 515, 130, 128}, {37, 257, 1000, 1000, 260, 64},  {130, 200, 200, 200, 200, 32},
    {257, 129, 640, 648, 131, 256}, {64, 384, 4096, 4096, 384, 64}, {300, 75, 77, 77, 80, 32}};

TEST_P(W4A16, PrefillMatchesFloat64Reference) {
  KQ_REQUIRE_GPU();
  Rng r;
  cuda::GpuContext ctx;
  for (const PrefillCase& c : kPrefillCases) {
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
    const cuda::W4Weight w = upload(h);
    const auto x = random_bf16(r, size_t(c.M * c.ldx));
    const auto ref = reference_bf16_weights(h, x, c.M, c.ldx);
    const auto ref_exact = reference(h, x, c.M, c.ldx);
    DeviceBuffer<uint16_t> dx, dy(size_t(c.M * c.ldy));
    dx.upload(x);
    for (const auto path : {cuda::W4PrefillPath::Fused, cuda::W4PrefillPath::DequantGemm}) {
      SCOPED_TRACE("M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
                   " ldx=" + std::to_string(c.ldx) + " block=" + std::to_string(c.block) +
                   " path=" + std::to_string(int(path)) + " seed=" + std::to_string(r.seed));
      dy.fill_bytes(0xFF);
      cuda::w4a16_linear(ctx, w, dx.data(), c.ldx, c.M, dy.data(), c.ldy, path);
      KQ_CUDA_CHECK(cudaDeviceSynchronize());
      const auto got = dy.download();
      // Against the BF16 weights the kernel multiplies: FP32 accumulation and
      // BF16 output rounding only; against the exact weights: plus one weight rounding.
      EXPECT_LE(rel_l2(ref, bf16_matrix(got, size_t(c.M), size_t(c.N), size_t(c.ldy))), tol::kW4Gemm);
      EXPECT_LE(rel_l2(ref_exact, bf16_matrix(got, size_t(c.M), size_t(c.N), size_t(c.ldy))), tol::kW4Prefill);
      int64_t touched = 0;
      for (int64_t m = 0; m < c.M; ++m)
        for (int64_t n = c.N; n < c.ldy; ++n) touched += got[size_t(m * c.ldy + n)] != 0xFFFF;
      EXPECT_EQ(touched, 0);
    }
  }
}

TEST_P(W4A16, FusedGemmDirectMatchesReference) {
  KQ_REQUIRE_GPU();
  Rng r;
  const PrefillCase c{200, 300, 1000, 1000, 301, 64};  // odd ldy: scalar stores
  const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
  SCOPED_TRACE("seed=" + std::to_string(r.seed));
  const cuda::W4Weight w = upload(h);
  const auto x = random_bf16(r, size_t(c.M * c.ldx));
  DeviceBuffer<uint16_t> dx, dy(size_t(c.M * c.ldy));
  dx.upload(x);
  dy.fill_bytes(0xFF);
  cuda::w4a16_gemm(w, dx.data(), c.ldx, c.M, dy.data(), c.ldy, nullptr);
  KQ_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_LE(rel_l2(reference_bf16_weights(h, x, c.M, c.ldx),
                   bf16_matrix(dy.download(), size_t(c.M), size_t(c.N), size_t(c.ldy))),
            tol::kW4Gemm);
  EXPECT_THROW(cuda::w4a16_gemm(w, dx.data(), 1001, c.M - 1, dy.data(), c.ldy, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::w4a16_gemm(w, dx.data() + 1, c.ldx, c.M - 1, dy.data(), c.ldy, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::w4a16_gemm(w, dx.data(), c.ldx, 0, dy.data(), c.ldy, nullptr), InvalidArgument);
}

INSTANTIATE_TEST_SUITE_P(Formats, W4A16,
                         ::testing::Values(W4Format::NF4, W4Format::FP4, W4Format::INT4, W4Format::INT4Asym,
                                           W4Format::FP4Bnb),
                         [](const auto& p) {
                           std::string s = cuda::w4_format_name(p.param);
                           for (auto& ch : s)
                             if (ch == '-') ch = '_';
                           return s;
                         });

/// Input scales (W4Weight::x_scale, AWQ's 1 / s): every path of w4a16_linear
/// (streaming GEMV at M = 1 on large and small N, batch GEMV, fused GEMM,
/// dequantize + cuBLASLt) and the SwiGLU GEMV against the float64 product
/// W · (x ⊙ scale); the paths that cannot take the scales must refuse them.
TEST_P(W4A16, InputScalesApplyOnEveryPath) {
  KQ_REQUIRE_GPU();
  Rng r;
  cuda::GpuContext ctx;
  struct ScaleCase {
    int64_t M, N, K, ldx;
    int block;
    cuda::W4PrefillPath path;
  };
  const ScaleCase cases[] = {{1, 3001, 11008, 11008, 128, cuda::W4PrefillPath::Auto},
                             {1, 37, 300, 303, 64, cuda::W4PrefillPath::Auto},
                             {5, 257, 1000, 1001, 128, cuda::W4PrefillPath::Auto},
                             {16, 300, 4096, 4096, 32, cuda::W4PrefillPath::Auto},
                             {37, 257, 1000, 1003, 64, cuda::W4PrefillPath::Fused},
                             {130, 200, 640, 640, 128, cuda::W4PrefillPath::DequantGemm}};
  for (const ScaleCase& c : cases) {
    SCOPED_TRACE("M=" + std::to_string(c.M) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) +
                 " ldx=" + std::to_string(c.ldx) + " path=" + std::to_string(int(c.path)) +
                 " seed=" + std::to_string(r.seed));
    const HostW4 h = random_w4(r, GetParam(), c.N, c.K, c.block);
    cuda::W4Weight w = upload(h);
    std::vector<float> xs(size_t(c.K));
    for (auto& v : xs) v = float(std::exp2(r.uniform(-3.0, 3.0)));  // AWQ's 1 / s spans decades
    cuda::set_w4_input_scale(w, xs.data());
    EXPECT_EQ(w.bytes(), w.codes.bytes() + w.scales.bytes() + w.zeros.bytes() + size_t(c.K) * 4);
    const auto x = random_bf16(r, size_t(c.M * c.ldx));
    // Reference: the exact product with x ⊙ scale in float64 (no rounding of the scaled x).
    std::vector<double> ref(size_t(c.M * c.N));
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < c.K; ++k)
          acc += double(bf16f(x[size_t(m * c.ldx + k)])) * double(xs[size_t(k)]) * h.value(n, k);
        ref[size_t(m * c.N + n)] = acc;
      }
    DeviceBuffer<uint16_t> dx, dy(size_t(c.M * c.N));
    dx.upload(x);
    dy.fill_bytes(0xFF);
    cuda::w4a16_linear(ctx, w, dx.data(), c.ldx, c.M, dy.data(), c.N, c.path);
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    const auto got = bf16_matrix(dy.download(), size_t(c.M), size_t(c.N), size_t(c.N));
    EXPECT_LE(rel_l2(ref, got), c.M > cuda::kW4GemvMaxM ? tol::kW4Prefill : tol::kW4Gemv);
    // Without the scales the result is far off: the check above can fail.
    std::vector<double> unscaled(ref.size());
    for (int64_t m = 0; m < c.M; ++m)
      for (int64_t n = 0; n < c.N; ++n) {
        double acc = 0;
        for (int64_t k = 0; k < c.K; ++k) acc += double(bf16f(x[size_t(m * c.ldx + k)])) * h.value(n, k);
        unscaled[size_t(m * c.N + n)] = acc;
      }
    EXPECT_GT(rel_l2(unscaled, got), 0.1);
    if (c.M > 1 && c.M <= cuda::kW4GemvMaxM) {
      EXPECT_THROW(cuda::w4a16_gemv(w, dx.data(), c.ldx, c.M, dy.data(), c.N, nullptr), InvalidArgument);
    }
    if (c.M > cuda::kW4GemvMaxM && c.ldx % 8 == 0) {
      EXPECT_THROW(cuda::w4a16_gemm(w, dx.data(), c.ldx, c.M, dy.data(), c.N, nullptr), InvalidArgument);
    }
  }
  // The SwiGLU GEMV scales h = BF16(silu(gate) · up) before the product: equal
  // to the SwiGLU kernel, then the scaled streaming GEMV.
  const HostW4 h = random_w4(r, GetParam(), 2048, 11008, 128);
  cuda::W4Weight w = upload(h);
  std::vector<float> xs(size_t(h.K));
  for (auto& v : xs) v = float(std::exp2(r.uniform(-3.0, 3.0)));
  cuda::set_w4_input_scale(w, xs.data());
  const auto gate = random_bf16(r, size_t(h.K), 2.0), upv = random_bf16(r, size_t(h.K), 2.0);
  DeviceBuffer<uint16_t> dg, du, dh(size_t(h.K)), y1(size_t(h.N)), y2(size_t(h.N));
  dg.upload(gate);
  du.upload(upv);
  y1.fill_bytes(0xFF);
  y2.fill_bytes(0xFF);
  cuda::swiglu(dg.data(), h.K, du.data(), h.K, dh.data(), h.K, 1, h.K, nullptr);
  cuda::w4a16_linear(ctx, w, dh.data(), h.K, 1, y1.data(), h.N);
  ASSERT_TRUE(cuda::w4a16_gemv_swiglu(w, dg.data(), du.data(), y2.data(), nullptr));
  KQ_CUDA_CHECK(cudaDeviceSynchronize());
  EXPECT_EQ(y1.download(), y2.download());
}

TEST(W4A16InputScale, RejectsScalesThatAreNotFiniteAndPositive) {
  KQ_REQUIRE_GPU();
  Rng r;
  const HostW4 h = random_w4(r, W4Format::INT4Asym, 16, 256, 128);
  for (const float bad : {0.0f, -1.0f, std::numeric_limits<float>::infinity(), std::nanf("")}) {
    cuda::W4Weight w = upload(h);
    std::vector<float> xs(256, 1.0f);
    xs[200] = bad;
    EXPECT_THROW(cuda::set_w4_input_scale(w, xs.data()), InvalidArgument);
    EXPECT_TRUE(w.x_scale.empty());
  }
}

TEST(W4A16Args, RejectsBadInput) {
  const std::vector<uint8_t> codes(64, 3), bad_codes(64, 16);
  const std::vector<float> scales(2, 0.1f), zeros(2, 8.0f);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::NF4, 1, 64, 48, codes.data(), scales.data()), InvalidArgument);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::NF4, 1, 64, 512, codes.data(), scales.data()), InvalidArgument);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::NF4, 1, 64, 32, bad_codes.data(), scales.data()), InvalidArgument);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::INT4Asym, 1, 64, 32, codes.data(), scales.data()), InvalidArgument);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::NF4, 1, 64, 32, codes.data(), scales.data(), zeros.data()),
               InvalidArgument);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::NF4, 0, 64, 32, codes.data(), scales.data()), InvalidArgument);
  const std::vector<float> half_zeros(2, 7.5f), big_zeros(2, 16.0f);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::INT4Asym, 1, 64, 32, codes.data(), scales.data(), half_zeros.data()),
               InvalidArgument);
  EXPECT_THROW(cuda::upload_w4_weight(W4Format::INT4Asym, 1, 64, 32, codes.data(), scales.data(), big_zeros.data()),
               InvalidArgument);
  KQ_REQUIRE_GPU();
  const cuda::W4Weight w = cuda::upload_w4_weight(W4Format::NF4, 1, 64, 32, codes.data(), scales.data());
  DeviceBuffer<uint16_t> b(64 * 16);
  EXPECT_THROW(cuda::w4a16_gemv(w, b.data(), 64, 17, b.data(), 1, nullptr), InvalidArgument);
  EXPECT_THROW(cuda::w4a16_gemv(w, b.data(), 32, 1, b.data(), 1, nullptr), InvalidArgument);
}

TEST(W4A16Layout, CodePositionIsAPermutationOfEachTile) {
  std::vector<int> seen(256, 0);
  for (int64_t k = 0; k < 256; ++k) {
    const int64_t pos = cuda::w4_code_position(k);
    ASSERT_EQ(pos / 128, k / 128) << "k=" << k;
    ++seen[size_t(pos)];
  }
  for (int v : seen) EXPECT_EQ(v, 1);
  // Lane t = 1, step s = 2 holds k = 16*2 + 4*1 + i at positions 32 + 8 + i.
  EXPECT_EQ(cuda::w4_code_position(36), 40);
  EXPECT_EQ(cuda::w4_code_position(128 + 39), 128 + 43);
}

TEST(W4A16Codebooks, MatchPublishedValues) {
  const auto nf4 = cuda::w4_codebook(W4Format::NF4);
  EXPECT_EQ(nf4[0], -1.0f);
  EXPECT_EQ(nf4[7], 0.0f);
  EXPECT_EQ(nf4[15], 1.0f);
  for (int i = 1; i < 16; ++i) EXPECT_LT(nf4[size_t(i - 1)], nf4[size_t(i)]);
  const auto fp4 = cuda::w4_codebook(W4Format::FP4);
  // E2M1: code 0b0111 = 2^(3-1) * 1.5 = 6; 0b0001 = subnormal 0.5; sign in bit 3.
  EXPECT_EQ(fp4[7], 6.0f);
  EXPECT_EQ(fp4[1], 0.5f);
  EXPECT_EQ(fp4[0xB], -1.5f);
  const auto i4 = cuda::w4_codebook(W4Format::INT4);  // offset binary, as src/formats/int4.hpp
  EXPECT_EQ(i4[0], -8.0f);
  EXPECT_EQ(i4[8], 0.0f);
  EXPECT_EQ(i4[15], 7.0f);
  // bitsandbytes' FP4 (functional.get_4bit_type("fp4") before its division by 12), by code, sign in bit 3; every
  // value a BF16 value (low 16 bits of the F32 pattern zero), so the GEMV's BF16 table holds them exactly.
  const auto bnb = cuda::w4_codebook(W4Format::FP4Bnb);
  const float raw[8] = {0.0f, 0.0625f, 8.0f, 12.0f, 4.0f, 6.0f, 2.0f, 3.0f};
  for (int c = 0; c < 16; ++c) {
    EXPECT_EQ(bnb[size_t(c)], c < 8 ? raw[c] : -raw[c - 8]) << c;
    EXPECT_EQ(bf16f(f32_to_bf16(bnb[size_t(c)])), bnb[size_t(c)]) << c;
  }
  EXPECT_STREQ(cuda::w4_format_name(W4Format::FP4Bnb), "fp4-bnb");
}

}  // namespace
}  // namespace kq::testing
#endif  // KQ_WITH_CUDA
