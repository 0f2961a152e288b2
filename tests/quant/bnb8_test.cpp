// bitsandbytes 8-bit (LLM.int8()) layers converted into kq's INT8 format: the codes kept, per-row scales
// SCB · (1/127) within F32 roundings (relative 2^-22) of bitsandbytes' dequantization (tests/common/bnb_pack.hpp), all-zero rows in
// kq's form, and errors naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <string>

#include "common/bnb_pack.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "quant/bnb8.hpp"

namespace kq {
namespace {

using testing::error_of;
using testing::has;

TensorGetter getter(const std::map<std::string, Tensor>& m) {
  return [&m](const std::string& n) { return m.count(n) ? m.at(n) : Tensor(); };
}

TEST(Bnb8, CodesKeptAndWeightsWithinTwoRoundingsOfBitsandbytes) {
  for (const bool w8a8 : {false, true}) {
    const testing::Bnb8Codes c = testing::bnb8_codes(37, 300, 5, 11);
    auto t = testing::bnb8_layer_tensors(c, "l");
    if (w8a8) t.erase("l.weight_format");  // absent in files of bitsandbytes before 0.45: row-major then too
    const PackedWeight p = import_bnb_int8(getter(t), "l", w8a8, 37, 300);
    EXPECT_EQ(p.spec.name(), w8a8 ? "int8" : "int8-wo");
    ASSERT_TRUE(p.codes.dtype() == DType::I8 && p.codes.shape() == Shape({37, 300}));
    EXPECT_EQ(std::memcmp(p.codes.raw(), c.q.data(), c.q.size()), 0);
    ASSERT_TRUE(p.scales.shape() == Shape({37}));
    EXPECT_EQ(p.scales.data<float>()[11], 1.0f);  // the all-zero row: codes 0, scale 1 (kq's form)
    const Tensor w = p.dequantize(), want = testing::bnb8_reference(c);
    for (int64_t i = 0; i < w.numel(); ++i) {
      const float a = w.data<float>()[i], b = want.data<float>()[i];
      ASSERT_LE(std::fabs(a - b), std::ldexp(std::fabs(b), -22) * 1.01f) << i;
    }
  }
}

TEST(Bnb8, AnAbsmaxThatUnderflowsGivesAZeroRow) {
  testing::Bnb8Codes c = testing::bnb8_codes(4, 64, 9);
  c.scb[2] = 1e-44f;  // a denormal absmax: SCB / 127 rounds to 0, as every value of the row does
  const auto t = testing::bnb8_layer_tensors(c, "l");
  const PackedWeight p = import_bnb_int8(getter(t), "l", false, 4, 64);
  EXPECT_EQ(p.scales.data<float>()[2], 1.0f);
  for (int64_t k = 0; k < 64; ++k) EXPECT_EQ(p.codes.data<int8_t>()[2 * 64 + k], 0) << k;
}

TEST(Bnb8, BadTensorsAreNamed) {
  const testing::Bnb8Codes c = testing::bnb8_codes(8, 32, 3);
  auto error = [&](const std::function<void(std::map<std::string, Tensor>&)>& edit) {
    auto t = testing::bnb8_layer_tensors(c, "x.q_proj");
    for (auto& [n, v] : t) v = v.clone();
    edit(t);
    return error_of<FormatError>([&] { (void)import_bnb_int8(getter(t), "x.q_proj", false, 8, 32); });
  };
  std::string m = error([](auto& t) { t.erase("x.q_proj.SCB"); });
  EXPECT_TRUE(has(m, "'x.q_proj.SCB' is missing")) << m;
  m = error([](auto& t) { t["x.q_proj.weight_format"].template mutable_data<uint8_t>()[0] = 3; });
  EXPECT_TRUE(has(m, "x.q_proj.weight_format") && has(m, "col_ampere")) << m;
  m = error([](auto& t) { t["x.q_proj.weight_format"] = Tensor::zeros(DType::F32, {2}); });
  EXPECT_TRUE(has(m, "x.q_proj.weight_format") && has(m, "U8 []")) << m;
  m = error([](auto& t) { t["x.q_proj.weight"] = Tensor::zeros(DType::I8, {8, 31}); });
  EXPECT_TRUE(has(m, "x.q_proj.weight") && has(m, "I8 [8, 32]") && has(m, "[8, 31]")) << m;
  m = error([](auto& t) { t["x.q_proj.SCB"].template mutable_data<float>()[7] = INFINITY; });
  EXPECT_TRUE(has(m, "x.q_proj.SCB") && has(m, "row 7") && has(m, "non-finite")) << m;
  // LLM.int8() writes codes in [-127, 127]: -128 is named with its index (tester 22).
  m = error([](auto& t) { t["x.q_proj.weight"].template mutable_data<int8_t>()[5 * 32 + 17] = -128; });
  EXPECT_TRUE(has(m, "'x.q_proj.weight': code -128 at [5, 17]") && has(m, "[-127, 127]")) << m;
  EXPECT_THROW((void)import_bnb_int8(getter(testing::bnb8_layer_tensors(c, "p")), "p", false, 0, 32),
               InvalidArgument);
}

}  // namespace
}  // namespace kq
