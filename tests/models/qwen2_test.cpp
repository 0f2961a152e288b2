// model_type "qwen2" on a real model: copies of the shared llama-small as Qwen2 (biases on q/k/v_proj, none on
// o_proj and the MLP) give, bit for bit, the logits of the same copy as a Llama with "attention_bias": true, the
// same q/k/v biases and a zero o_proj bias; with zero q/k/v biases, llama-small's own logits.
#include <gtest/gtest.h>

#include <map>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "models/llama_variant.hpp"

namespace kq {
using nlohmann::json;

namespace {

/// all_logits(dir, tokens), with the warnings of the load and run in `warnings`.
std::vector<float> logits_and_warnings(const std::filesystem::path& dir, const std::vector<int32_t>& tokens,
                                       std::vector<std::string>& warnings) {
  testing::CapturedWarnings captured;
  std::vector<float> out = testing::all_logits(dir, tokens);
  warnings.insert(warnings.end(), captured.list.begin(), captured.list.end());
  return out;
}

TEST(Qwen2Model, QkvBiasesGiveTheLogitsOfLlamaWithAttentionBias) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto tokens = testing::spread_ids(96);
  const auto biases = testing::llama_small_qkv_biases(7);
  testing::TempDir tmp;
  const auto qwen2 = testing::llama_small_as_qwen2(tmp.path / "qwen2", biases);
  const auto llama = testing::llama_small_with_attention_biases(tmp.path / "llama", biases);

  const ModelConfig c = load_model_config(qwen2);
  EXPECT_EQ(c.arch, Arch::Qwen2);
  EXPECT_EQ(arch_name(c.arch), "qwen2");
  EXPECT_TRUE(c.qkv_bias);
  EXPECT_FALSE(c.attention_bias);
  EXPECT_FALSE(c.mlp_bias);

  std::vector<std::string> warnings;  // none: every bias is read (none unused), none missing
  const std::vector<float> got = logits_and_warnings(qwen2, tokens, warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  const std::vector<float> want = logits_and_warnings(llama, tokens, warnings);
  EXPECT_TRUE(warnings.empty()) << warnings.front();
  ASSERT_EQ(got.size(), want.size());
  EXPECT_EQ(got, want);
  EXPECT_NE(got, testing::all_logits(testing::llama_small_dir(), tokens));  // the biases change the logits

  // The ops: q/k/v_proj carry the checkpoint's biases (BF16 values, exact in F32), o_proj and the MLP none.
  auto m = Model::load(qwen2, ExecContext{Device::CPU, 2});
  int with_bias = 0;
  for (const LinearSlot& s : m->linear_layers()) {
    const Tensor b = (*s.op)->bias();
    const bool qkv = s.name.ends_with("q_proj") || s.name.ends_with("k_proj") || s.name.ends_with("v_proj");
    ASSERT_EQ(b.defined(), qkv) << s.name;
    if (!qkv) continue;
    const Tensor want_b = biases.at(s.name + ".bias").to_f32();
    ASSERT_EQ(b.numel(), want_b.numel()) << s.name;
    for (int64_t i = 0; i < b.numel(); ++i) ASSERT_EQ(b.data<float>()[i], want_b.data<float>()[i]) << s.name;
    ++with_bias;
  }
  EXPECT_EQ(with_bias, 3 * 4);
}

TEST(Qwen2Model, ZeroQkvBiasesGiveTheLlamaLogits) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto tokens = testing::spread_ids(96);
  testing::TempDir tmp;
  const auto dir = testing::llama_small_as_qwen2(tmp.path / "m", testing::llama_small_qkv_biases(0));
  EXPECT_EQ(testing::all_logits(dir, tokens), testing::all_logits(testing::llama_small_dir(), tokens));
}

// use_sliding_window with layers >= max_window_layers (2 of 4) windowed (sliding_window 64): the context stays
// 512 positions; within one window the logits are those of the same copy without a window, past it they differ;
// max_window_layers 4: no layer has it.
TEST(Qwen2Model, SlidingWindowLayersKeepTheContext) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  const auto biases = testing::llama_small_qkv_biases(9);
  const auto window = [](int64_t max_window_layers) {
    return [max_window_layers](json& j) {
      j["use_sliding_window"] = true;
      j["sliding_window"] = 64;
      j["max_window_layers"] = max_window_layers;
    };
  };
  const auto dir = testing::llama_small_as_qwen2(tmp.path / "w", biases, window(2));
  const auto tokens = testing::spread_ids(64);
  const auto plain = testing::llama_small_as_qwen2(tmp.path / "plain", biases);
  EXPECT_EQ(testing::all_logits(dir, tokens), testing::all_logits(plain, tokens));
  const auto longer = testing::spread_ids(80);
  EXPECT_NE(testing::all_logits(dir, longer), testing::all_logits(plain, longer));
  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  EXPECT_EQ(m->config().sliding_window, 64);
  EXPECT_EQ(m->config().sliding_layers, (std::vector<bool>{false, false, true, true}));
  EXPECT_EQ(m->config().max_positions, 512);
  EXPECT_EQ(m->config().size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(m->make_cache(0).capacity(), 512);
  const ModelConfig none = load_model_config(testing::llama_small_as_qwen2(tmp.path / "n", biases, window(4)));
  EXPECT_EQ(none.sliding_window, 0);
  EXPECT_EQ(none.max_positions, 512);
}

// A Qwen2 checkpoint without one of its q/k/v biases is refused naming the tensor (a Llama one without
// attention_bias loads without them); an o_proj bias, which Qwen2 does not have, is warned about as unused.
TEST(Qwen2Model, MissingQkvBiasIsNamedAnOProjBiasIsUnused) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  const auto biases = testing::llama_small_qkv_biases(3);
  const auto missing = testing::llama_small_as_qwen2(tmp.path / "missing", biases, {}, [](auto& t) {
    t.erase("model.layers.2.self_attn.q_proj.bias");
  });
  const auto load = [](const std::filesystem::path& dir) {
    return [dir] { (void)Model::load(dir, ExecContext{Device::CPU, 2}); };
  };
  const std::string msg = testing::error_of<FormatError>(load(missing));
  EXPECT_TRUE(testing::has(msg, "missing tensor 'model.layers.2.self_attn.q_proj.bias' (expected shape [256])"))
      << msg;
  const auto none = testing::llama_small_as_qwen2(tmp.path / "none", {});
  EXPECT_TRUE(testing::has(testing::error_of<FormatError>(load(none)),
                           "missing tensor 'model.layers.0.self_attn.q_proj.bias'"));

  const auto with_o = testing::llama_small_as_qwen2(tmp.path / "with_o", biases, {}, [](auto& t) {
    t["model.layers.1.self_attn.o_proj.bias"] = t.at("model.layers.1.self_attn.q_proj.bias");
  });
  std::vector<std::string> warnings;
  const auto tokens = testing::spread_ids(16);
  const std::vector<float> got = logits_and_warnings(with_o, tokens, warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_TRUE(testing::has(warnings[0], "not used by the qwen2 architecture")) << warnings[0];
  EXPECT_TRUE(testing::has(warnings[0], "'model.layers.1.self_attn.o_proj.bias'")) << warnings[0];
  warnings.clear();
  const auto plain = testing::llama_small_as_qwen2(tmp.path / "plain", biases);
  EXPECT_EQ(got, logits_and_warnings(plain, tokens, warnings));
  EXPECT_TRUE(warnings.empty());
}

}  // namespace
}  // namespace kq
