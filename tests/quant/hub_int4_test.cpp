// AutoAWQ / AutoGPTQ 4-bit layers converted into kq's INT4 format: exact
// dequantization against the packer of tests/common/hub_pack.hpp (written from
// the published layouts), and errors naming the tensor.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <string>

#include <fmt/format.h>

#include "common/hub_pack.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "quant/hub_int4.hpp"

namespace kq {
namespace {

using testing::error_of;
using testing::has;
using testing::HubCodes;
using testing::HubFormat;

TensorGetter getter(const std::map<std::string, Tensor>& m) {
  return [&m](const std::string& n) { return m.count(n) ? m.at(n) : Tensor(); };
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.dtype() == b.dtype() && a.shape() == b.shape() && std::memcmp(a.raw(), b.raw(), a.nbytes()) == 0;
}

HubInt4Layout layout_of(HubFormat f) {
  return f == HubFormat::Awq ? HubInt4Layout::AwqGemm
         : f == HubFormat::GptqV1 ? HubInt4Layout::GptqV1
                                  : HubInt4Layout::GptqV2;
}

struct Case {
  HubFormat format;
  bool symmetric;
  int64_t group;
  int64_t expected_block;
};

// Every layout, symmetric and asymmetric, groups 32 / 64 / 128 / -1 (one group per row) and 1024 (wider than
// kq's groups: split into blocks of 256 with the scale repeated): the converted weight dequantizes to exactly
// (q - z) * s, the symmetric ones (all zero points 8) as kq's symmetric INT4.
TEST(HubInt4, DequantizesExactlyToTheReference) {
  int checked = 0;
  for (const HubFormat f : {HubFormat::Awq, HubFormat::GptqV1, HubFormat::GptqV2})
    for (const bool sym : {true, false})
      for (const auto& [group, K, block] : {std::tuple{int64_t(32), int64_t(256), int64_t(32)},
                                            std::tuple{int64_t(64), int64_t(256), int64_t(64)},
                                            std::tuple{int64_t(128), int64_t(384), int64_t(128)},
                                            std::tuple{int64_t(-1), int64_t(320), int64_t(256)},
                                            std::tuple{int64_t(1024), int64_t(2048), int64_t(256)}}) {
        const int64_t N = 24;
        const int zmin = f == HubFormat::GptqV1 ? 1 : 0;
        const HubCodes c = testing::hub_codes(N, K, group, sym, zmin, uint64_t(K + group + int(f) * 7 + sym));
        const auto tensors = testing::hub_layer_tensors(c, "m.l", f);
        const PackedWeight p = import_hub_int4(getter(tensors), "m.l", {layout_of(f), group}, N, K);
        const std::string what = fmt::format("format {} sym {} group {}", int(f), sym, group);
        EXPECT_EQ(p.spec.block_size, block) << what;
        EXPECT_EQ(p.spec.symmetric, sym) << what;
        EXPECT_EQ(p.spec.format, PrecisionFormat::INT4) << what;
        EXPECT_TRUE(same_bytes(p.dequantize(), testing::hub_reference(c))) << what;
        ++checked;
      }
  EXPECT_EQ(checked, 30);
}

// GPTQ without g_idx (k / group_size) gives the same weight; a g_idx with desc_act true but consecutive groups
// (act-order not used) converts too.
TEST(HubInt4, GptqGroupsWithoutGIdxAndDescActWithConsecutiveGroups) {
  const HubCodes c = testing::hub_codes(16, 128, 32, false, 0, 5);
  const Tensor ref = testing::hub_reference(c);
  const auto no_gidx = testing::hub_layer_tensors(c, "x", HubFormat::GptqV2, /*g_idx=*/false);
  EXPECT_TRUE(same_bytes(import_hub_int4(getter(no_gidx), "x", {HubInt4Layout::GptqV2, 32}, 16, 128).dequantize(),
                         ref));
  const auto with = testing::hub_layer_tensors(c, "x", HubFormat::GptqV2);
  EXPECT_TRUE(same_bytes(
      import_hub_int4(getter(with), "x", {HubInt4Layout::GptqV2, 32, /*desc_act=*/true}, 16, 128).dequantize(), ref));
  const std::string msg = error_of<FormatError>(
      [&] { (void)import_hub_int4(getter(no_gidx), "x", {HubInt4Layout::GptqV2, 32, true}, 16, 128); });
  EXPECT_TRUE(has(msg, "'x.g_idx' is missing") && has(msg, "desc_act")) << msg;
}

// AutoAWQ's interleave worked by hand: word 0x76543210 (nibble i = i) in row k = 0 holds columns
// 0, 2, 4, 6, 1, 3, 5, 7 in nibbles 0..7, so column n gets code {0, 4, 1, 5, 2, 6, 3, 7}[n].
TEST(HubInt4, AwqNibbleOrderByHand) {
  const int64_t N = 8, K = 32;
  std::map<std::string, Tensor> t;
  t["a.qweight"] = Tensor::empty(DType::I32, {K, 1});
  std::memset(t["a.qweight"].raw_mut(), 0, size_t(K) * 4);
  t["a.qweight"].mutable_data<uint32_t>()[0] = 0x76543210u;
  t["a.qzeros"] = Tensor::empty(DType::I32, {1, 1});
  t["a.qzeros"].mutable_data<uint32_t>()[0] = 0;
  const std::vector<float> ones(8, 1.0f);
  t["a.scales"] = Tensor::empty(DType::F16, {1, N});
  convert_from_f32(DType::F16, ones.data(), t["a.scales"].mutable_data<uint16_t>(), 8);
  const Tensor w = import_hub_int4(getter(t), "a", {HubInt4Layout::AwqGemm, 32}, N, K).dequantize();
  const float expected[8] = {0, 4, 1, 5, 2, 6, 3, 7};
  for (int64_t n = 0; n < N; ++n) {
    EXPECT_EQ(w.data<float>()[n * K], expected[n]) << n;
    EXPECT_EQ(w.data<float>()[n * K + 1], 0.0f) << n;
  }
  // GPTQ's sequential order: the same word in qweight row 0 gives k = 0..7 of column 0 the codes 0..7.
  std::map<std::string, Tensor> g;
  g["b.qweight"] = Tensor::empty(DType::I32, {K / 8, N});
  std::memset(g["b.qweight"].raw_mut(), 0, size_t(K) * 4);
  g["b.qweight"].mutable_data<uint32_t>()[0] = 0x76543210u;
  g["b.qzeros"] = Tensor::empty(DType::I32, {1, 1});
  g["b.qzeros"].mutable_data<uint32_t>()[0] = 0;
  g["b.scales"] = t["a.scales"];
  const Tensor v = import_hub_int4(getter(g), "b", {HubInt4Layout::GptqV2, 32}, N, K).dequantize();
  for (int64_t k = 0; k < 8; ++k) EXPECT_EQ(v.data<float>()[k], float(k)) << k;
  EXPECT_EQ(v.data<float>()[K], 0.0f);
}

/// The message of converting `tensors` (after `edit`) as `f`, group 32, W [16, 64].
std::string error_after(HubFormat f, const std::function<void(std::map<std::string, Tensor>&)>& edit,
                        int64_t group = 32, bool sym = false) {
  const HubCodes c = testing::hub_codes(16, 64, group, sym, 1, 3);
  auto t = testing::hub_layer_tensors(c, "p", f);
  edit(t);
  return error_of<FormatError>([&] { (void)import_hub_int4(getter(t), "p", {layout_of(f), group}, 16, 64); });
}

Tensor f16(const std::vector<float>& v, const Shape& shape) {
  Tensor t = Tensor::empty(DType::F16, shape);
  convert_from_f32(DType::F16, v.data(), t.mutable_data<uint16_t>(), v.size());
  return t;
}

TEST(HubInt4, WrongDtypeShapeOrMissingTensorIsNamed) {
  std::string m = error_after(HubFormat::Awq, [](auto& t) { t["p.qweight"] = Tensor::empty(DType::F32, {64, 2}); });
  EXPECT_TRUE(has(m, "'p.qweight'") && has(m, "expected I32 [64, 2]") && has(m, "got F32")) << m;
  // Truncated: a row missing.
  m = error_after(HubFormat::GptqV1, [](auto& t) { t["p.qweight"] = t["p.qweight"].slice_rows(0, 7); });
  EXPECT_TRUE(has(m, "'p.qweight'") && has(m, "expected I32 [8, 16]") && has(m, "[7, 16]")) << m;
  m = error_after(HubFormat::GptqV2, [](auto& t) { t.erase("p.scales"); });
  EXPECT_TRUE(has(m, "'p.scales' is missing (needed by a GPTQ (v2) layer)")) << m;
  m = error_after(HubFormat::Awq, [](auto& t) { t.erase("p.qzeros"); });  // "an AWQ" (tester 22)
  EXPECT_TRUE(has(m, "'p.qzeros' is missing (needed by an AWQ (gemm) layer)")) << m;
  m = error_after(HubFormat::Awq, [](auto& t) { t["p.qzeros"] = t["p.qzeros"].slice_rows(0, 1); });
  EXPECT_TRUE(has(m, "'p.qzeros'") && has(m, "[2, 2]")) << m;
  m = error_after(HubFormat::GptqV2, [](auto& t) { t["p.scales"] = Tensor::empty(DType::I32, {2, 16}); });
  EXPECT_TRUE(has(m, "'p.scales'") && has(m, "got I32")) << m;
  m = error_after(HubFormat::GptqV2, [](auto& t) { t["p.g_idx"] = t["p.g_idx"].slice_rows(0, 63); });
  EXPECT_TRUE(has(m, "'p.g_idx'") && has(m, "[64]")) << m;
  // The group size of the config against the tensors: scales for group 32 read as group 64.
  const HubCodes c = testing::hub_codes(16, 64, 32, false, 0, 3);
  const auto t = testing::hub_layer_tensors(c, "p", HubFormat::Awq);
  m = error_of<FormatError>([&] { (void)import_hub_int4(getter(t), "p", {HubInt4Layout::AwqGemm, 64}, 16, 64); });
  EXPECT_TRUE(has(m, "'p.qzeros'") && has(m, "group_size 64")) << m;
  // An out_features that is not a multiple of 8 cannot hold whole int32s.
  m = error_of<FormatError>([&] { (void)import_hub_int4(getter(t), "p", {HubInt4Layout::AwqGemm, 32}, 12, 64); });
  EXPECT_TRUE(has(m, "'p.qweight'") && has(m, "multiple of 8")) << m;
}

TEST(HubInt4, BadValuesAreNamedWithTheirIndex) {
  std::vector<float> s(32, 0.01f);
  s[17] = -0.5f;
  std::string m = error_after(HubFormat::Awq, [&](auto& t) { t["p.scales"] = f16(s, {2, 16}); });
  EXPECT_TRUE(has(m, "'p.scales'") && has(m, "negative scale") && has(m, "[1, 1]") &&
              has(m, "an AWQ (gemm) checkpoint writes finite scales"))
      << m;
  s[17] = std::numeric_limits<float>::infinity();
  m = error_after(HubFormat::GptqV1, [&](auto& t) { t["p.scales"] = f16(s, {2, 16}); });
  EXPECT_TRUE(has(m, "'p.scales'") && has(m, "non-finite")) << m;
  // GPTQ v1: a stored zero of 15 would be zero point 16.
  m = error_after(HubFormat::GptqV1, [](auto& t) { t["p.qzeros"].template mutable_data<uint32_t>()[3] = 0xF0000000u; });
  EXPECT_TRUE(has(m, "'p.qzeros'") && has(m, "stored zero 15 at [1, 15]") && has(m, "zero point 16")) << m;
  // The same word is fine in v2 (zero point 15).
  const HubCodes c = testing::hub_codes(16, 64, 32, false, 0, 3);
  auto t = testing::hub_layer_tensors(c, "p", HubFormat::GptqV2);
  t["p.qzeros"].mutable_data<uint32_t>()[3] = 0xF0000000u;
  EXPECT_NO_THROW((void)import_hub_int4(getter(t), "p", {HubInt4Layout::GptqV2, 32}, 16, 64));
  m = error_after(HubFormat::GptqV2, [](auto& t2) { t2["p.g_idx"].template mutable_data<int32_t>()[40] = 2; });
  EXPECT_TRUE(has(m, "'p.g_idx'") && has(m, "group 2 at index 40") && has(m, "[0, 2)")) << m;
  m = error_after(HubFormat::GptqV2, [](auto& t2) { t2["p.g_idx"].template mutable_data<int32_t>()[5] = -1; });
  EXPECT_TRUE(has(m, "'p.g_idx'") && has(m, "group -1 at index 5")) << m;
}

// Act-order (desc_act) groups are not runs of 32 consecutive input channels: refused.
TEST(HubInt4, GroupsThatAreNotRunsOfConsecutiveChannelsAreRefused) {
  std::string m = error_after(HubFormat::GptqV2, [](auto& t) {
    int32_t* g = t["p.g_idx"].template mutable_data<int32_t>();
    for (int64_t k = 0; k < 64; ++k) g[k] = int32_t(k % 2);  // interleaved, as act-order gives
  });
  EXPECT_TRUE(has(m, "'p.g_idx'") && has(m, "not runs of 32") && has(m, "input channel 0 is in group 0, channel 1 "
                                                                        "in group 1") &&
              has(m, "desc_act"))
      << m;
}

// Tester round 21, finding 1: a group_size that is not a multiple of 32 (16, 48) was refused as act-order
// ("desc_act: true ... use a checkpoint quantized without desc_act") for a checkpoint without act-order; it is
// named as the group size now, in every layout. Multiples of 32 that are not kq group sizes (96, 160, 512)
// convert exactly: each checkpoint group is whole kq groups with its scale and zero point repeated.
TEST(HubInt4, GroupSizeThatIsNotAMultipleOf32IsNamedAndOtherMultiplesConvert) {
  for (const HubFormat f : {HubFormat::Awq, HubFormat::GptqV1, HubFormat::GptqV2})
    for (const int64_t group : {16, 48}) {
      const std::string m = error_after(f, [](auto&) {}, group);
      EXPECT_TRUE(has(m, "'p'") && has(m, fmt::format("group_size {} is not a multiple of 32", group)) &&
                  !has(m, "desc_act"))
          << m;
    }
  // A row no longer than the group is one group: converts (block 32).
  const HubCodes one = testing::hub_codes(16, 16, 16, false, 0, 5);
  const PackedWeight p1 =
      import_hub_int4(getter(testing::hub_layer_tensors(one, "p", HubFormat::Awq)), "p", {HubInt4Layout::AwqGemm, 16},
                      16, 16);
  EXPECT_TRUE(same_bytes(p1.dequantize(), testing::hub_reference(one)));
  for (const auto& [group, K, block] : {std::tuple{int64_t(96), int64_t(384), int64_t(32)},
                                        std::tuple{int64_t(160), int64_t(320), int64_t(32)},
                                        std::tuple{int64_t(512), int64_t(1024), int64_t(256)}})
    for (const HubFormat f : {HubFormat::Awq, HubFormat::GptqV1}) {
      const HubCodes c = testing::hub_codes(16, K, group, false, 1, uint64_t(group));
      const PackedWeight p = import_hub_int4(getter(testing::hub_layer_tensors(c, "p", f)), "p", {layout_of(f), group},
                                             16, K);
      EXPECT_EQ(p.spec.block_size, block) << group;
      EXPECT_TRUE(same_bytes(p.dequantize(), testing::hub_reference(c))) << group;
    }
}

// A layer quantized fused (Phi-3's qkv_proj: q, k then v rows) split after the conversion: each part's weight is
// exactly its own reference (q - z) * s, symmetric when its own zero points are all 8 although the fused layer's
// are not, and, for parts whose rows hold whole int32s, the very PackedWeight of the part stored on its own (codes,
// scales, zero points, spec). Boundaries need not be multiples of 8 (24 | 12 | 12: v starts at row 36): the rows
// are split after the int32s are unpacked. GPTQ act-order with static groups (g_idx runs of 32, not in order).
TEST(HubInt4, RowsOfAFusedLayerAreTheWeightsOfItsParts) {
  const int64_t K = 128, group = 32;
  for (const HubFormat f : {HubFormat::Awq, HubFormat::GptqV1, HubFormat::GptqV2})
    for (const bool act_order : {false, true}) {
      if (act_order && f == HubFormat::Awq) continue;
      const int zmin = f == HubFormat::GptqV1 ? 1 : 0;
      std::vector<HubCodes> parts = {testing::hub_codes(24, K, group, /*symmetric=*/true, zmin, 21),
                                     testing::hub_codes(12, K, group, false, zmin, 22),
                                     testing::hub_codes(12, K, group, false, zmin, 23)};
      if (act_order)
        for (HubCodes& c : parts) {
          c.g_idx.resize(size_t(K));
          for (int64_t k = 0; k < K; ++k) c.g_idx[size_t(k)] = int32_t((k / group + 2) % (K / group));
        }
      const HubCodes fused = testing::hub_codes_concat(parts);
      const PackedWeight all = import_hub_int4(getter(testing::hub_layer_tensors(fused, "qkv", f)), "qkv",
                                               {layout_of(f), group, act_order}, 48, K);
      EXPECT_FALSE(all.spec.symmetric);
      int64_t row0 = 0;
      for (size_t i = 0; i < parts.size(); ++i) {
        const std::string what = fmt::format("format {} act_order {} part {}", int(f), act_order, i);
        const PackedWeight p = hub_int4_rows(all, row0, parts[i].N);
        row0 += parts[i].N;
        EXPECT_EQ(p.N, parts[i].N) << what;
        EXPECT_EQ(p.spec.symmetric, i == 0) << what;
        EXPECT_EQ(p.spec.block_size, group) << what;
        EXPECT_TRUE(same_bytes(p.dequantize(), testing::hub_reference(parts[i]))) << what;
        if (parts[i].N % 8 != 0) continue;
        const PackedWeight alone = import_hub_int4(getter(testing::hub_layer_tensors(parts[i], "q", f)), "q",
                                                   {layout_of(f), group, act_order}, parts[i].N, K);
        EXPECT_EQ(p.spec.name(), alone.spec.name()) << what;
        EXPECT_TRUE(same_bytes(p.codes, alone.codes) && same_bytes(p.scales, alone.scales)) << what;
        EXPECT_EQ(p.zeros.defined(), alone.zeros.defined()) << what;
      }
      EXPECT_THROW((void)hub_int4_rows(all, 40, 12), InvalidArgument);
      EXPECT_THROW((void)hub_int4_rows(all, 0, 0), InvalidArgument);
    }
}

}  // namespace
}  // namespace kq
