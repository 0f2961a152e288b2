// model_type "mistral" on a real model: copies of the shared llama-small with model_type "mistral" are the
// Llama architecture with Mistral's sliding-window attention, which kq runs within one window only (the
// context is capped at sliding_window, where it is exactly full causal attention).
#include <gtest/gtest.h>

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
    EXPECT_EQ(context_limit_note(c), "");
    EXPECT_EQ(testing::all_logits(dir, tokens), original);
  }
}

// sliding_window 64: the context is 64 positions; within it the logits are llama-small's; a longer cache,
// is refused (evaluation windows: tests/eval/mistral_window_test.cpp).
TEST(MistralModel, SmallWindowCapsTheContext) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  const auto dir = testing::llama_small_variant(tmp.path / "m", as_mistral(64));
  const auto tokens = testing::spread_ids(64);
  EXPECT_EQ(testing::all_logits(dir, tokens), testing::all_logits(testing::llama_small_dir(), tokens));

  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  EXPECT_EQ(m->config().max_positions, 64);
  EXPECT_EQ(m->config().sliding_window, 64);
  EXPECT_EQ(m->config().size_keys.max_positions, "sliding_window");
  const std::string note = context_limit_note(m->config());
  EXPECT_TRUE(testing::has(note, "sliding_window 64")) << note;
  EXPECT_EQ(m->make_cache(0).capacity(), 64);
  EXPECT_THROW(m->make_cache(65), InvalidArgument);
}

}  // namespace
}  // namespace kq
