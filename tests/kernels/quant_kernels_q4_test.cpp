// Optimized 4-bit kernels (NF4, FP4, bitsandbytes FP4, INT4 sym/asym) of every ISA vs a double
// reference built from the reference decoder (q4_decode_block_ref): every
// block size, with and without double quantization, odd shapes (K not a
// multiple of the block or of the decode unit, K past one 1024 chunk, odd N),
// decode = prefill bits and thread invariance below the sgemm threshold, the
// prefill path's sgemm over the reference's decoded weights from it on, and
// exact decoding of every code (bitsandbytes FP4's also against its published values).
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "common/bnb_pack.hpp"
#include "formats/double_quant.hpp"
#include "isa_test_util.hpp"
#include "kernels/cpu/linear_f32_kernels.hpp"
#include "kernels/cpu/linear_int4_ref.hpp"
#include "kernels/cpu/quant_kernels_avx2.hpp"
#include "kq/dtype.hpp"

namespace kq::testing {
namespace {

using cpu::Isa;
using formats::WeightFormat;

/// A random 4-bit weight: codes, scales (plain or double-quantized) and zero points.
struct Q4Weight {
  std::vector<uint8_t> codes, zeros;
  std::vector<float> scales, dq_scales, bias;
  std::vector<int8_t> dq_codes;
  cpu::Q4WeightView v;

  Q4Weight(WeightFormat f, int64_t N, int64_t K, int64_t block, bool dq, bool with_bias, uint32_t seed) {
    v.format = f;
    v.N = N;
    v.K = K;
    v.block = block;
    v.nb = (K + block - 1) / block;
    v.row_bytes = (K + 1) / 2;
    codes = random_bytes(size_t(N * v.row_bytes), seed);
    if (K % 2)  // the documented layout: the unused high nibble of an odd row is 0
      for (int64_t n = 0; n < N; ++n) codes[size_t(n * v.row_bytes + v.row_bytes - 1)] &= 0x0F;
    v.codes = codes.data();
    const int64_t nbt = N * v.nb;
    std::vector<float> s = gaussian(size_t(nbt), seed + 1, 0.02f);
    for (float& x : s) x = std::fabs(x) + 0.001f;
    if (dq) {
      dq_codes.resize(size_t(nbt));
      dq_scales.resize(size_t((nbt + formats::kDqGroup - 1) / formats::kDqGroup));
      v.dq_mean = formats::double_quantize(s.data(), nbt, dq_codes.data(), dq_scales.data());
      v.dq_codes = dq_codes.data();
      v.dq_scales = dq_scales.data();
    } else {
      scales = s;
      v.scales = scales.data();
    }
    if (f == WeightFormat::INT4_ASYM) {
      zeros = random_bytes(size_t(nbt), seed + 2, 0, 15);
      v.zeros = zeros.data();
    }
    if (with_bias) {
      bias = gaussian(size_t(N), seed + 3);
      v.bias = bias.data();
    }
  }

  /// The reference's decoded weight, F32 [N, K].
  std::vector<float> dequantized() const {
    std::vector<float> w(static_cast<size_t>(v.N * v.K));
    std::vector<float> blk(static_cast<size_t>(v.block));
    for (int64_t n = 0; n < v.N; ++n)
      for (int64_t b = 0; b < v.nb; ++b) {
        cpu::q4_decode_block_ref(v, n, b, blk.data());
        const int64_t len = std::min(v.block, v.K - b * v.block);
        std::copy(blk.begin(), blk.begin() + len, w.begin() + n * v.K + b * v.block);
      }
    return w;
  }
};

std::string format_name(WeightFormat f) {
  switch (f) {
    case WeightFormat::NF4: return "nf4";
    case WeightFormat::FP4: return "fp4";
    case WeightFormat::INT4_SYM: return "int4";
    case WeightFormat::FP4_BNB: return "fp4-bnb";
    default: return "int4-asym";
  }
}

constexpr WeightFormat kFormats[] = {WeightFormat::NF4, WeightFormat::FP4, WeightFormat::INT4_SYM,
                                     WeightFormat::INT4_ASYM, WeightFormat::FP4_BNB};

/// Tokens from which the optimized tables run the dequantized weight through oneDNN sgemm.
constexpr int64_t kSgemmMinM = cpu::avx2::kQ4SgemmMinM;

class QuantKernelsQ4 : public ::testing::TestWithParam<Isa> {
 protected:
  const cpu::QuantKernels& k() const { return cpu::quant_kernels(GetParam()); }
};

void check_against_double(const cpu::QuantKernels& k, const Q4Weight& q, int64_t M, const std::string& what) {
  const cpu::Q4WeightView& v = q.v;
  std::vector<float> x = gaussian(size_t(M * v.K), uint32_t(M * 17 + v.K + v.N));
  if (v.bf16)  // the op passes bf16-rounded activations for the compute dtype BF16
    for (float& e : x) e = bf16_to_f32(f32_to_bf16(e));
  auto run = [&](int64_t m, const float* xp, float* y, int t) { k.gemm_f32q4_f32_blockwise(v, xp, m, y, t); };
  const std::vector<float> y = run_batch(M, v.N, v.K, x, run, cpu::avx2::kQ4SgemmMinM, what);
  const std::vector<float> W = q.dequantized();
  std::vector<double> ref(y.size()), mag(y.size());
  for (int64_t m = 0; m < M; ++m)
    for (int64_t n = 0; n < v.N; ++n) {
      double acc = v.bias ? double(v.bias[n]) : 0.0, a = std::fabs(acc);
      for (int64_t kk = 0; kk < v.K; ++kk) {
        const double t = double(x[size_t(m * v.K + kk)]) * double(W[size_t(n * v.K + kk)]);
        acc += t;
        a += std::fabs(t);
      }
      ref[size_t(m * v.N + n)] = acc;
      mag[size_t(m * v.N + n)] = a;
    }
  expect_within_tolerance(y, ref, mag, M, v.N, v.K, what);
}

TEST_P(QuantKernelsQ4, EveryFormatBlockAndShapeWithinTolerance) {
  KQ_REQUIRE_ISA(GetParam());
  struct Case {
    int64_t N, K, block;
    bool dq;
  };
  const Case cases[] = {{7, 688, 64, true},  {5, 33, 32, false},   {9, 1, 64, false},    {3, 688, 128, false},
                        {4, 63, 64, true},   {3, 65, 32, true},    {2, 1100, 256, true}, {5, 2050, 128, false},
                        {1, 256, 256, false}, {6, 200, 128, true}, {3, 129, 64, false}};
  for (WeightFormat f : kFormats)
    for (const Case& c : cases) {
      const Q4Weight q(f, c.N, c.K, c.block, c.dq, c.N % 2 == 1, uint32_t(c.N * 101 + c.K + c.block));
      for (int64_t M : {int64_t(1), int64_t(3), int64_t(8), kSgemmMinM - 1, kSgemmMinM, kSgemmMinM + 1})
        check_against_double(k(), q, M,
                             format_name(f) + " N=" + std::to_string(c.N) + " K=" + std::to_string(c.K) + " B=" +
                                 std::to_string(c.block) + (c.dq ? " dq" : "") + " M=" + std::to_string(M));
    }
}

// Each code of each format through every position of a decode unit: a
// one-hot x picks one weight, and y must equal the reference's decoded value
// bit for bit (block sum = codebook value, times the scale: one rounding, as
// in the reference's table).
TEST_P(QuantKernelsQ4, EveryCodeAtEveryUnitPositionDecodesExactly) {
  KQ_REQUIRE_ISA(GetParam());
  for (WeightFormat f : kFormats)
    for (int64_t block : {32, 64}) {
      const int64_t N = 16, K = block;
      Q4Weight q(f, N, K, block, false, false, 77);
      for (int64_t n = 0; n < N; ++n)  // row n holds code n everywhere
        for (int64_t b = 0; b < q.v.row_bytes; ++b) q.codes[size_t(n * q.v.row_bytes + b)] = uint8_t(n | (n << 4));
      const std::vector<float> W = q.dequantized();
      for (int64_t pos = 0; pos < K; ++pos) {
        std::vector<float> x(size_t(K), 0.0f), y(static_cast<size_t>(N));
        x[size_t(pos)] = 1.0f;
        k().gemm_f32q4_f32_blockwise(q.v, x.data(), 1, y.data(), 1);
        for (int64_t n = 0; n < N; ++n) {
          ASSERT_EQ(y[size_t(n)], W[size_t(n * K + pos)]) << format_name(f) << " B=" << block << " code " << n
                                                            << " position " << pos;
          if (f == WeightFormat::FP4_BNB) {  // bitsandbytes' value of code n (quant_map, sign of bit 3) · scale
            const float value = bnb_fp4_map(int(n & 7)) * ((n & 8) ? -1.0f : 1.0f);
            ASSERT_EQ(y[size_t(n)], value * q.scales[size_t(n * q.v.nb + pos / block)]) << "code " << n;
          }
        }
      }
    }
}

TEST_P(QuantKernelsQ4, Bf16ComputeMatchesReference) {
  KQ_REQUIRE_ISA(GetParam());
  Q4Weight q(WeightFormat::NF4, 5, 300, 64, true, true, 5);
  q.v.bf16 = true;
  const std::vector<float> x = gaussian(size_t(3 * 300), 6);
  std::vector<float> y0(15), y1(15);
  cpu::quant_kernels(Isa::Ref).gemm_f32q4_f32_blockwise(q.v, x.data(), 3, y0.data(), 2);
  k().gemm_f32q4_f32_blockwise(q.v, x.data(), 3, y1.data(), 2);
  EXPECT_EQ(y0, y1);  // BF16 compute below kSgemmMinM runs the reference kernel on every ISA
}

// Prefill from kSgemmMinM tokens on (every format, both compute dtypes, with
// and without double quantization, bias and zero points): the result is
// oneDNN sgemm over exactly the reference's decoded weights plus the bias, bit
// for bit (one panel: N·K < 2^22), and within tolerance of a double
// recomputation on shapes whose N and K are not multiples of the block, of 16
// or of a panel (two panels at 2100 × 2100).
TEST_P(QuantKernelsQ4, PrefillIsSgemmOverTheReferenceDecodedWeights) {
  KQ_REQUIRE_ISA(GetParam());
  struct Case {
    int64_t N, K, block;
    bool dq, bias;
  };
  const Case cases[] = {{37, 700, 64, true, true}, {5, 33, 32, false, false}, {19, 1100, 256, false, true},
                        {8, 129, 128, true, false}, {3, 2050, 32, false, true}};
  for (WeightFormat f : kFormats)
    for (bool bf16 : {false, true})
      for (const Case& c : cases) {
        Q4Weight q(f, c.N, c.K, c.block, c.dq, c.bias, uint32_t(c.N * 7 + c.K + c.block));
        q.v.bf16 = bf16;
        const std::vector<float> W = q.dequantized();
        for (int64_t M : {kSgemmMinM, kSgemmMinM + 1, kSgemmMinM + 27}) {
          const std::string what = format_name(f) + (bf16 ? " bf16" : "") + " N=" + std::to_string(c.N) +
                                   " K=" + std::to_string(c.K) + " B=" + std::to_string(c.block) +
                                   (c.dq ? " dq" : "") + (c.bias ? " bias" : "") + " M=" + std::to_string(M);
          std::vector<float> x = gaussian(size_t(M * c.K), uint32_t(M + c.K));
          if (bf16)
            for (float& e : x) e = bf16_to_f32(f32_to_bf16(e));
          std::vector<float> y(size_t(M * c.N), std::nanf("")), want(y.size());
          k().gemm_f32q4_f32_blockwise(q.v, x.data(), M, y.data(), 2);
          cpu::gemm_f32_dnnl(x.data(), M, W.data(), c.N, c.K, want.data(), 2);
          if (c.bias)
            for (int64_t m = 0; m < M; ++m)
              for (int64_t n = 0; n < c.N; ++n) want[size_t(m * c.N + n)] += q.bias[size_t(n)];
          for (size_t i = 0; i < y.size(); ++i) ASSERT_EQ(y[i], want[i]) << what << " at " << i;
          check_against_double(k(), q, M, what);
        }
      }
  Q4Weight big(WeightFormat::INT4_ASYM, 2100, 2100, 128, true, true, 3);  // 2 panels of 1984 and 116 rows
  check_against_double(k(), big, kSgemmMinM + 3, "int4-asym N=K=2100 dq bias");
}

INSTANTIATE_TEST_SUITE_P(Isas, QuantKernelsQ4, ::testing::ValuesIn(kOptimizedIsas), isa_param_name);

}  // namespace
}  // namespace kq::testing
