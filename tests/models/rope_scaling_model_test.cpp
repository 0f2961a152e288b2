// RoPE scaling on a real model: copies of the shared llama-small whose config.json asks for "llama3" or
// "linear" RoPE scaling give the original's logits bit for bit when the scaling leaves every frequency
// unchanged, and other logits when it changes some. Neither load warns (no unused tensor, no rotary buffer).
#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kernels/cpu/ops_rope.hpp"
#include "kq/model.hpp"
#include "models/backend.hpp"
#include "models/llama_variant.hpp"

namespace kq {
using nlohmann::json;

namespace {

/// llama-small's rope_parameters (transformers 5) with the llama3 keys added.
void set_llama3(json& j, double factor, double low, double high, int64_t original) {
  j["rope_parameters"]["rope_type"] = "llama3";
  j["rope_parameters"]["factor"] = factor;
  j["rope_parameters"]["low_freq_factor"] = low;
  j["rope_parameters"]["high_freq_factor"] = high;
  j["rope_parameters"]["original_max_position_embeddings"] = original;
}

/// Logits of `tokens` through a llama-small copy edited by `edit`, failing on any warning of the load or run.
std::vector<float> variant_logits(const std::function<void(json&)>& edit, const std::vector<int32_t>& tokens) {
  testing::TempDir tmp;
  const auto dir = testing::llama_small_variant(tmp.path / "m", edit);
  testing::CapturedWarnings warnings;
  std::vector<float> out = testing::all_logits(dir, tokens);
  EXPECT_TRUE(warnings.list.empty()) << warnings.list.front();
  return out;
}

// head_dim 32, θ 10000: wavelengths 2π·10000^(i/16) for i < 16, at most about 35333. With original 8192 and
// high_freq_factor 0.2 every one is below 8192/0.2 = 40960: the "unchanged" band (checked below by the
// formula through rope_inv_freq). Factors 8 / 1 / 4 with original 512 (llama-small's context) change the
// frequencies whose wavelength exceeds 128.
TEST(RopeScalingModel, Llama3UnchangedBandGivesIdenticalLogitsOtherFactorsDiffer) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto tokens = testing::spread_ids(96);
  const std::vector<float> original = testing::all_logits(testing::llama_small_dir(), tokens);

  RopeScaling keep;
  keep.type = RopeScaling::Type::Llama3;
  keep.factor = 8;
  keep.low_freq_factor = 0.1;
  keep.high_freq_factor = 0.2;
  keep.original_max_positions = 8192;
  ASSERT_EQ(cpu::rope_inv_freq(10000.0, 32, keep), cpu::rope_inv_freq(10000.0, 32));
  EXPECT_EQ(variant_logits([](json& j) { set_llama3(j, 8, 0.1, 0.2, 8192); }, tokens), original);

  RopeScaling change = keep;
  change.low_freq_factor = 1;
  change.high_freq_factor = 4;
  change.original_max_positions = 512;
  ASSERT_NE(cpu::rope_inv_freq(10000.0, 32, change), cpu::rope_inv_freq(10000.0, 32));
  const std::vector<float> changed = variant_logits([](json& j) { set_llama3(j, 8, 1, 4, 512); }, tokens);
  ASSERT_EQ(changed.size(), original.size());
  EXPECT_NE(changed, original);

  // The same scaling at the top level (transformers 4's rope_scaling) gives the same logits.
  const auto top_level = [](json& j) {
    j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8}, {"low_freq_factor", 1}, {"high_freq_factor", 4},
                         {"original_max_position_embeddings", 512}};
  };
  EXPECT_EQ(variant_logits(top_level, tokens), changed);
}

TEST(RopeScalingModel, LinearFactorOneIdenticalFactorTwoDiffers) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto tokens = testing::spread_ids(96);
  const std::vector<float> original = testing::all_logits(testing::llama_small_dir(), tokens);
  const auto linear = [](double factor) {
    return [factor](json& j) { j["rope_scaling"] = {{"type", "linear"}, {"factor", factor}}; };
  };
  EXPECT_EQ(variant_logits(linear(1), tokens), original);
  const std::vector<float> two = variant_logits(linear(2), tokens);
  ASSERT_EQ(two.size(), original.size());
  EXPECT_NE(two, original);
  // Position p with factor 2 rotates as position p/2 unscaled: position 0's row (no rotation) is unchanged.
  const size_t vocab = original.size() / tokens.size();
  EXPECT_EQ(std::vector<float>(two.begin(), two.begin() + long(vocab)),
            std::vector<float>(original.begin(), original.begin() + long(vocab)));
}

// yarn on llama-small (head_dim 32, θ 10000): with original 2^30 both correction dims exceed the 15 pairs, so
// every frequency is kept (extrapolation) and with factor 1 the attention factor is 1: the original logits bit
// for bit. Factor 4 over llama-small's own 512 positions blends the low frequencies and scales cos/sin by
// 1.1386: other logits. "dynamic" within the context: the original logits.
TEST(RopeScalingModel, YarnKeepsOrChangesTheLogitsAsItsBandsSay) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto tokens = testing::spread_ids(96);
  const std::vector<float> original = testing::all_logits(testing::llama_small_dir(), tokens);
  const auto yarn = [](double factor, int64_t original_max) {
    return [factor, original_max](json& j) {
      j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", factor},
                           {"original_max_position_embeddings", original_max}};
    };
  };
  RopeScaling keep;
  keep.type = RopeScaling::Type::Yarn;
  keep.factor = 1;
  keep.original_max_positions = int64_t(1) << 30;
  ASSERT_EQ(cpu::rope_inv_freq(10000.0, 32, keep), cpu::rope_inv_freq(10000.0, 32));
  EXPECT_EQ(variant_logits(yarn(1, int64_t(1) << 30), tokens), original);
  const std::vector<float> four = variant_logits(yarn(4, 512), tokens);
  ASSERT_EQ(four.size(), original.size());
  EXPECT_NE(four, original);
  EXPECT_EQ(variant_logits([](json& j) { j["rope_scaling"] = {{"type", "dynamic"}, {"factor", 4.0}}; }, tokens),
            original);
}

// A RopeScaling built in code is checked as config.json's is (check_config), and a model's tables with
// scaling are those of cpu::make_rope_table: position p's values do not depend on how far they were grown.
TEST(RopeScalingModel, ScalingBuiltInCodeIsCheckedAndTablesGrowAsPrefixes) {
  ModelConfig c;
  c.arch = Arch::Llama;
  c.vocab_size = 97;
  c.hidden_size = 64;
  c.intermediate_size = 172;
  c.num_layers = 1;
  c.num_heads = 4;
  c.num_kv_heads = 2;
  c.head_dim = 16;
  c.max_positions = 1000;
  c.activation = "silu";
  c.rope_scaling.type = RopeScaling::Type::Llama3;
  c.rope_scaling.factor = 8;
  c.rope_scaling.low_freq_factor = 1;
  c.rope_scaling.high_freq_factor = 4;
  c.rope_scaling.original_max_positions = 64;
  EXPECT_NO_THROW(Model::random(c, 3));
  const auto refused = [&](const std::function<void(RopeScaling&)>& edit, const std::string& needle) {
    ModelConfig bad = c;
    edit(bad.rope_scaling);
    const std::string e = testing::error_of<InvalidArgument>([&] { Model::random(bad, 3); });
    EXPECT_TRUE(testing::has(e, needle)) << e;
  };
  refused([](RopeScaling& s) { s.factor = 0; }, "factor 0 must be a finite positive number");
  refused([](RopeScaling& s) { s.low_freq_factor = std::nan(""); }, "low_freq_factor nan");
  refused([](RopeScaling& s) { s.high_freq_factor = 1; }, "high_freq_factor 1 equals low_freq_factor");
  refused([](RopeScaling& s) { s.original_max_positions = 0; }, "original_max_position_embeddings 0");
  refused([](RopeScaling& s) { s.type = RopeScaling::Type(9); }, "RopeScaling::type 9");

  const models::Rope small = models::make_rope(10000.0, 16, 100, c.rope_scaling);
  const models::Rope large = models::make_rope(10000.0, 16, 1000, c.rope_scaling);
  EXPECT_EQ(small.table.cos, std::vector<float>(large.table.cos.begin(), large.table.cos.begin() + 100 * 8));
  EXPECT_EQ(small.table.sin, std::vector<float>(large.table.sin.begin(), large.table.sin.begin() + 100 * 8));
  EXPECT_NE(small.table.cos, models::make_rope(10000.0, 16, 100).table.cos);
  // The same tokens through a model whose tables start small and grow, and one grown first: identical.
  auto grown = Model::random(c, 5), fresh = Model::random(c, 5);
  std::vector<float> tmp(size_t(97));
  KVCache warm = grown->make_cache(1000);
  grown->forward(std::vector<int32_t>{1}, warm, tmp.data(), false);
  const auto tokens = testing::spread_ids(300, 97);
  const auto run = [&](Model& m) {
    std::vector<float> out(tokens.size() * 97);
    KVCache cache = m.make_cache(300);
    m.forward(tokens, cache, out.data());
    return out;
  };
  EXPECT_EQ(run(*fresh), run(*grown));
}

}  // namespace
}  // namespace kq
