// bitsandbytes NF4 layers converted into kq's NF4 format: exact dequantization against the packer of
// tests/common/bnb_pack.hpp (written from bitsandbytes' layout), and errors naming the tensor.
#include <gtest/gtest.h>

#include <cstring>
#include <map>
#include <string>

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

// Block sizes 64 (bitsandbytes' default), 32, 128, 256 and 4096 (over rows of 1024: kq blocks of 256 with the
// absmax repeated, one bitsandbytes block spanning four rows), plain and nested (double-quantized) absmax.
TEST(Bnb4, Nf4DequantizesExactlyToTheReference) {
  for (const bool nested : {false, true})
    for (const auto& [bs, K, block] : {std::tuple{int64_t(64), int64_t(128), int64_t(64)},
                                       std::tuple{int64_t(32), int64_t(96), int64_t(32)},
                                       std::tuple{int64_t(128), int64_t(256), int64_t(128)},
                                       std::tuple{int64_t(256), int64_t(512), int64_t(256)},
                                       std::tuple{int64_t(4096), int64_t(1024), int64_t(256)}}) {
      const int64_t N = 12;
      const testing::BnbCodes c = testing::bnb_codes(N, K, bs, nested, uint64_t(bs + K + nested));
      const auto t = testing::bnb_layer_tensors(c, "m.l");
      const PackedWeight p = import_bnb_nf4(getter(t), "m.l.weight", state_of(c), N, K);
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
  const Tensor w = import_bnb_nf4(getter(t), "a.weight", state_of(c), 1, 64).dequantize();
  EXPECT_EQ(w.data<float>()[0], 0.0f);
  EXPECT_EQ(w.data<float>()[1], 2.0f);
}

std::string error_after(const std::function<void(std::map<std::string, Tensor>&, Bnb4State&)>& edit,
                        bool nested = false) {
  const testing::BnbCodes c = testing::bnb_codes(8, 64, 64, nested, 2);
  auto t = testing::bnb_layer_tensors(c, "p");
  Bnb4State s = state_of(c);
  edit(t, s);
  return error_of<FormatError>([&] { (void)import_bnb_nf4(getter(t), "p.weight", s, 8, 64); });
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
  m = error_after([](auto&, auto& s) { s.nested_offset = -1.0f; }, /*nested=*/true);
  EXPECT_TRUE(has(m, "'p.weight.absmax'") && has(m, "decoded from the nested codes")) << m;
}

}  // namespace
}  // namespace kq
