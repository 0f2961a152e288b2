// model_type "mistral" on a real model: copies of the shared llama-small with model_type "mistral" are the
// Llama architecture with Mistral's sliding-window attention (the context stays max_position_embeddings; a tiny
// model against a double-precision reference: tests/models/sliding_window_test.cpp).
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "models/llama_variant.hpp"

namespace kq {
using nlohmann::json;

namespace {

/// llama-small as model_type mistral with `window` as its sliding_window (json null: none).
std::function<void(json&)> as_mistral(const json& window) {
  return [window](json& j) {
    j["model_type"] = "mistral";
    j["architectures"] = {"MistralForCausalLM"};
    j["sliding_window"] = window;
  };
}

// sliding_window null (no window) and 100000 (longer than the 512 positions): exactly llama-small.
TEST(MistralModel, NoWindowOrALargeOneGivesTheLlamaLogits) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto tokens = testing::spread_ids(300);
  const std::vector<float> original = testing::all_logits(testing::llama_small_dir(), tokens);
  for (const json& window : {json(nullptr), json(100000)}) {
    SCOPED_TRACE(window.dump());
    testing::TempDir tmp;
    const auto dir = testing::llama_small_variant(tmp.path / "m", as_mistral(window));
    const ModelConfig c = load_model_config(dir);
    EXPECT_EQ(c.arch, Arch::Mistral);
    EXPECT_EQ(arch_name(c.arch), "mistral");
    EXPECT_EQ(c.max_positions, 512);
    EXPECT_EQ(c.size_keys.max_positions, "max_position_embeddings");
    EXPECT_EQ(c.sliding_window, window.is_null() ? 0 : window.get<int64_t>());
    EXPECT_EQ(testing::all_logits(dir, tokens), original);
  }
}

// sliding_window 64: the context stays llama-small's 512 positions; the first 64 positions (all within one
// window) have llama-small's logits, the later ones, which no longer see the first positions, differ.
TEST(MistralModel, SmallWindowKeepsTheContextAndChangesOnlyLaterPositions) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  const auto dir = testing::llama_small_variant(tmp.path / "m", as_mistral(64));
  const auto tokens = testing::spread_ids(100);
  const std::vector<float> windowed = testing::all_logits(dir, tokens);
  const std::vector<float> llama = testing::all_logits(testing::llama_small_dir(), tokens);
  const size_t first64 = windowed.size() / 100 * 64;
  EXPECT_TRUE(std::equal(windowed.begin(), windowed.begin() + std::ptrdiff_t(first64), llama.begin()));
  EXPECT_FALSE(std::equal(windowed.begin() + std::ptrdiff_t(first64), windowed.end(),
                          llama.begin() + std::ptrdiff_t(first64)));

  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  EXPECT_EQ(m->config().max_positions, 512);
  EXPECT_EQ(m->config().sliding_window, 64);
  EXPECT_EQ(m->config().size_keys.max_positions, "max_position_embeddings");
  EXPECT_EQ(m->make_cache(0).capacity(), 512);
}

// num_key_value_heads absent: MistralConfig's default 8 and Qwen2Config's 32
// (null: the query heads), and the messages a wrong default leads to say that
// the value is that default (they said "num_key_value_heads 8" of a config
// without the key; Qwen2 took the query heads).
TEST(MistralModel, AbsentKeyValueHeadsAreTheConfigClassDefaultAndSaidSo) {
  KQ_REQUIRE_SHARED("models/llama-small");  // 8 query heads, 4 key-value heads, head_dim 32
  testing::TempDir tmp;
  const auto mistral = testing::llama_small_variant(tmp.path / "m", [](json& j) {
    as_mistral(nullptr)(j);
    j.erase("num_key_value_heads");
  });
  EXPECT_EQ(load_model_config(mistral).num_kv_heads, 8);
  const std::string w = testing::error_of<FormatError>([&] { (void)Model::load(mistral); });
  EXPECT_TRUE(testing::has(w, "config.json: num_key_value_heads (8 when absent: MistralConfig's default) = 8, "
                              "head_dim = 32 and hidden_size = 256 "
                              "but tensor 'model.layers.0.self_attn.k_proj.weight'"))
      << w;
  EXPECT_TRUE(testing::has(w, "expected [num_key_value_heads × head_dim, hidden_size]")) << w;
  const auto four_heads = testing::llama_small_variant(tmp.path / "m4", [](json& j) {
    as_mistral(nullptr)(j);
    j.erase("num_key_value_heads");
    j["num_attention_heads"] = 4;
  });
  const std::string m4 = testing::error_of<FormatError>([&] { (void)load_model_config(four_heads); });
  EXPECT_TRUE(testing::has(m4, "num_attention_heads 4 is not a multiple of num_key_value_heads 8 (absent: "
                               "MistralConfig's default)"))
      << m4;
  const auto qwen2 = testing::llama_small_variant(tmp.path / "q", [](json& j) {
    j["model_type"] = "qwen2";
    j.erase("num_key_value_heads");
  });
  const std::string q = testing::error_of<FormatError>([&] { (void)load_model_config(qwen2); });
  EXPECT_TRUE(testing::has(q, "num_attention_heads 8 is not a multiple of num_key_value_heads 32 (absent: "
                              "Qwen2Config's default)"))
      << q;
  // Given (or null: the query heads), nothing is said of a default.
  const auto given = testing::llama_small_variant(tmp.path / "g", [](json& j) {
    as_mistral(nullptr)(j);
    j["num_key_value_heads"] = 3;
  });
  const std::string g = testing::error_of<FormatError>([&] { (void)load_model_config(given); });
  EXPECT_TRUE(testing::has(g, "num_attention_heads 8 is not a multiple of num_key_value_heads 3")) << g;
  EXPECT_FALSE(testing::has(g, "default")) << g;
  const auto null_kv = testing::llama_small_variant(tmp.path / "n", [](json& j) {
    j["model_type"] = "qwen2";
    j["num_key_value_heads"] = nullptr;
  });
  EXPECT_EQ(load_model_config(null_kv).num_kv_heads, 8);
}

}  // namespace
}  // namespace kq
