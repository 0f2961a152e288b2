// bitsandbytes NF4 and FP4 layers converted into kq's NF4 and FP4_BNB formats: exact dequantization against the
// packer of tests/common/bnb_pack.hpp (written from bitsandbytes' layout), FP4 also against bitsandbytes' formula
// in double, and errors naming the tensor.
#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>
#include <tuple>

#include <fmt/format.h>

#include "common/bnb_pack.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "quant/bnb4.hpp"

namespace kq {
namespace {

using testing::error_of;
using testing::has;

TensorGetter getter(const std::map<std::string, Tensor>& m) {
  return [&m](const std::string& n) { return m.count(n) ? m.at(n) : Tensor(); };
}

Bnb4State state_of(const testing::BnbCodes& c) {
  Bnb4State s;
  s.fp4 = c.fp4;
  s.blocksize = c.blocksize;
  s.rows = c.N;
  s.cols = c.K;
  s.nested = c.nested;
  s.nested_blocksize = 256;
  s.nested_offset = c.offset;
  return s;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

/// {bitsandbytes blocksize, K, kq block}: 64 (bitsandbytes' default), 32, 128, 256 and 4096 (over rows of 1024: kq
/// blocks of 256 with the absmax repeated, one bitsandbytes block spanning four rows).
constexpr std::array<std::tuple<int64_t, int64_t, int64_t>, 5> kBlockCases{
    {{64, 128, 64}, {32, 96, 32}, {128, 256, 128}, {256, 512, 256}, {4096, 1024, 256}}};

// Every block size of kBlockCases, plain and nested (double-quantized) absmax.
TEST(Bnb4, Nf4DequantizesExactlyToTheReference) {
  for (const bool nested : {false, true})
    for (const auto& [bs, K, block] : kBlockCases) {
      const int64_t N = 12;
      const testing::BnbCodes c = testing::bnb_codes(N, K, bs, nested, uint64_t(bs + K + nested));
      const auto t = testing::bnb_layer_tensors(c, "m.l");
      const PackedWeight p = import_bnb_4bit(getter(t), "m.l.weight", state_of(c), N, K);
      const std::string what = fmt::format("blocksize {} K {} nested {}", bs, K, nested);
      EXPECT_EQ(p.spec.format, PrecisionFormat::NF4) << what;
      EXPECT_EQ(p.spec.block_size, block) << what;
      EXPECT_FALSE(p.spec.double_quant) << what;
      EXPECT_TRUE(same_bytes(p.dequantize(), testing::bnb_reference(c))) << what;
    }
}

// The nibble order by hand: byte 0x7F holds element 0 (high nibble, code 7 = 0.0) and element 1 (code 15 = 1.0).
TEST(Bnb4, HighNibbleIsTheEvenElement) {
  testing::BnbCodes c = testing::bnb_codes(1, 64, 64, false, 1);
  c.absmax[0] = 2.0f;
  auto t = testing::bnb_layer_tensors(c, "a");
  t["a.weight"].mutable_data<uint8_t>()[0] = 0x7F;
  const Tensor w = import_bnb_4bit(getter(t), "a.weight", state_of(c), 1, 64).dequantize();
  EXPECT_EQ(w.data<float>()[0], 0.0f);
  EXPECT_EQ(w.data<float>()[1], 2.0f);
}

std::string error_after(const std::function<void(std::map<std::string, Tensor>&, Bnb4State&)>& edit,
                        bool nested = false, bool fp4 = false) {
  const testing::BnbCodes c = testing::bnb_codes(8, 64, 64, nested, 2, fp4);
  auto t = testing::bnb_layer_tensors(c, "p");
  Bnb4State s = state_of(c);
  edit(t, s);
  return error_of<FormatError>([&] { (void)import_bnb_4bit(getter(t), "p.weight", s, 8, 64); });
}

TEST(Bnb4, BadTensorsAndStatesAreNamed) {
  std::string m = error_after([](auto& t, auto&) { t["p.weight"] = t["p.weight"].slice_rows(0, 255).clone(); });
  EXPECT_TRUE(has(m, "'p.weight'") && has(m, "expected U8 [256, 1]") && has(m, "[255, 1]")) << m;
  m = error_after([](auto& t, auto&) { t.erase("p.weight.absmax"); });
  EXPECT_TRUE(has(m, "'p.weight.absmax' is missing")) << m;
  m = error_after([](auto& t, auto&) { t["p.weight.quant_map"].template mutable_data<float>()[3] = 0.5f; });
  EXPECT_TRUE(has(m, "'p.weight.quant_map'") && has(m, "index 3")) << m;
  m = error_after([](auto& t, auto&) { t["p.weight.absmax"].template mutable_data<float>()[5] = -1.0f; });
  EXPECT_TRUE(has(m, "'p.weight.absmax'") && has(m, "block 5") && has(m, "negative")) << m;
  m = error_after([](auto&, auto& s) { s.cols = 32; });
  EXPECT_TRUE(has(m, "quant_state.bitsandbytes__nf4") && has(m, "[8, 32]")) << m;
  m = error_after([](auto&, auto& s) { s.blocksize = 48; });
  EXPECT_TRUE(has(m, "blocksize 48") && has(m, "no kq block size")) << m;
  m = error_after([](auto& t, auto&) { t.erase("p.weight.nested_quant_map"); }, /*nested=*/true);
  EXPECT_TRUE(has(m, "'p.weight.nested_quant_map' is missing")) << m;
  // tester25: a blocksize near INT64_MAX overflowed (total + blocksize - 1) into "expected U8 [0]"; the range is
  // checked first, naming the key.
  m = error_after([](auto&, auto& s) { s.blocksize = 9223372036854775552; });
  EXPECT_TRUE(has(m, "quant_state.bitsandbytes__nf4': blocksize 9223372036854775552 is out of range")) << m;
  m = error_after([](auto&, auto& s) { s.blocksize = int64_t(1) << 31; });
  EXPECT_TRUE(has(m, "blocksize 2147483648 is out of range (1 to 2147483647")) << m;
  m = error_after([](auto&, auto& s) { s.blocksize = 0; });
  EXPECT_TRUE(has(m, "blocksize 0 is out of range")) << m;
  m = error_after([](auto&, auto& s) { s.nested_blocksize = std::numeric_limits<int64_t>::max(); }, /*nested=*/true);
  EXPECT_TRUE(has(m, "': nested_blocksize 9223372036854775807 is out of range")) << m;
  m = error_after([](auto&, auto& s) { s.nested_blocksize = -3; }, /*nested=*/true);
  EXPECT_TRUE(has(m, "': nested_blocksize -3 is out of range")) << m;
  m = error_after([](auto&, auto& s) { s.nested_offset = -1.0f; }, /*nested=*/true);
  EXPECT_TRUE(has(m, "'p.weight.absmax'") && has(m, "decoded from the nested codes")) << m;
}

// FP4 (bitsandbytes' own 4-bit float, not E2M1): every block size and both absmax forms, as for NF4. kq's weights
// are bit for bit the F32 product bitsandbytes' kernel computes (quant_map value · absmax), and within F32
// rounding of the formula in double: value / 12 rounded to F32 (relative 2^-24), the product rounded (2^-24),
// and a nested absmax's F32 product and offset sum (each 2^-24, the sum's relative to the decoded absmax:
// |code2 · 0.02| + 0.05 over at least 0.03, a factor of 7/3) -> at most 2^-24 · (1 + 1 + 7/3 + 1) < 2^-21.
TEST(Bnb4, Fp4DequantizesToBitsandbytesFormula) {
  for (const bool nested : {false, true})
    for (const auto& [bs, K, block] : kBlockCases) {
      const int64_t N = 12;
      const testing::BnbCodes c = testing::bnb_codes(N, K, bs, nested, uint64_t(3 * bs + K + nested), /*fp4=*/true);
      const auto t = testing::bnb_layer_tensors(c, "m.l");
      ASSERT_TRUE(t.count("m.l.weight.quant_state.bitsandbytes__fp4"));
      const PackedWeight p = import_bnb_4bit(getter(t), "m.l.weight", state_of(c), N, K);
      const std::string what = fmt::format("fp4 blocksize {} K {} nested {}", bs, K, nested);
      EXPECT_EQ(p.spec.format, PrecisionFormat::FP4_BNB) << what;
      EXPECT_EQ(p.spec.name(), fmt::format("fp4-bnb{}-nodq", block == 64 ? "" : fmt::format("-b{}", block))) << what;
      EXPECT_EQ(p.spec.block_size, block) << what;
      EXPECT_FALSE(p.spec.double_quant) << what;
      const Tensor w = p.dequantize();
      EXPECT_TRUE(same_bytes(w, testing::bnb_reference(c))) << what;
      const std::vector<double> ref = testing::bnb_reference_f64(c);
      int distinct_codes_seen = 0, zeros = 0;
      bool seen[16] = {};
      for (int64_t i = 0; i < N * K; ++i) {
        const double got = w.data<float>()[i], want = ref[size_t(i)];
        ASSERT_LE(std::fabs(got - want), std::ldexp(std::fabs(want), -21)) << what << " at " << i;
        if (!seen[c.q[size_t(i)]]) ++distinct_codes_seen;
        seen[c.q[size_t(i)]] = true;
        zeros += want == 0.0;
      }
      EXPECT_EQ(distinct_codes_seen, 16) << what;  // every code, the 1/192 subnormal included
      EXPECT_GT(zeros, 0) << what;
    }
}

// The code order by hand: byte 0x3B holds element 0 (high nibble, code 3 = 12/12 = 1) and element 1 (code 11 =
// -1); 0x16 holds code 1 (0.0625/12 = 1/192, where E2M1/6 would give 1/12) and code 6 (2/12); 0x52 code 5
// (6/12) and code 2 (8/12). Absmax 3.
TEST(Bnb4, Fp4CodesDecodeToBitsandbytesValues) {
  testing::BnbCodes c = testing::bnb_codes(1, 64, 64, false, 1, /*fp4=*/true);
  c.absmax[0] = 3.0f;
  auto t = testing::bnb_layer_tensors(c, "a");
  uint8_t* b = t["a.weight"].mutable_data<uint8_t>();
  b[0] = 0x3B;
  b[1] = 0x16;
  b[2] = 0x52;
  const Tensor w = import_bnb_4bit(getter(t), "a.weight", state_of(c), 1, 64).dequantize();
  const float* v = w.data<float>();
  EXPECT_EQ(v[0], 3.0f);
  EXPECT_EQ(v[1], -3.0f);
  EXPECT_EQ(v[2], float(0.0625 / 12) * 3.0f);
  EXPECT_NEAR(v[2], 3.0 / 192.0, 1e-9);
  EXPECT_EQ(v[3], 0.5f);
  EXPECT_EQ(v[4], 1.5f);
  EXPECT_EQ(v[5], 2.0f);
}

TEST(Bnb4, Fp4QuantMapIsCheckedByValue) {
  // bitsandbytes saves code 8 as +0; -0 is the same value and accepted too.
  {
    const testing::BnbCodes c = testing::bnb_codes(8, 64, 64, false, 2, /*fp4=*/true);
    auto t = testing::bnb_layer_tensors(c, "p");
    ASSERT_FALSE(std::signbit(t["p.weight.quant_map"].data<float>()[8]));
    t["p.weight.quant_map"].mutable_data<float>()[8] = -0.0f;
    EXPECT_TRUE(same_bytes(import_bnb_4bit(getter(t), "p.weight", state_of(c), 8, 64).dequantize(),
                           testing::bnb_reference(c)));
  }
  // E2M1 / 6 (OCP FP4 normalised) in bitsandbytes' code order differs at code 1: refused naming the index.
  std::string m = error_after(
      [](auto& t, auto&) { t["p.weight.quant_map"].template mutable_data<float>()[1] = 0.5f / 6.0f; }, false,
      /*fp4=*/true);
  EXPECT_TRUE(has(m, "'p.weight.quant_map'") && has(m, "index 1") && has(m, "bitsandbytes FP4")) << m;
  // NF4's map under an FP4 state.
  m = error_after([](auto& t, auto&) {
    for (int i = 0; i < 16; ++i) t["p.weight.quant_map"].template mutable_data<float>()[i] = testing::kBnbNf4[i];
  }, false, /*fp4=*/true);
  EXPECT_TRUE(has(m, "index 0") && has(m, "bitsandbytes FP4")) << m;
  m = error_after([](auto& t, auto&) { t["p.weight.quant_map"].template mutable_data<float>()[4] = NAN; }, false,
                  /*fp4=*/true);
  EXPECT_TRUE(has(m, "index 4")) << m;
  // A missing tensor names the FP4 layer.
  m = error_after([](auto& t, auto&) { t.erase("p.weight.absmax"); }, true, /*fp4=*/true);
  EXPECT_TRUE(has(m, "'p.weight.absmax' is missing (needed by a bitsandbytes FP4 layer)")) << m;
}

}  // namespace
}  // namespace kq
