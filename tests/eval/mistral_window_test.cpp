// Evaluation windows of a Mistral model whose sliding_window caps its context (ModelConfig::sliding_window):
// ctx 0 is the window, a longer ctx is refused with a message naming sliding_window.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "models/llama_variant.hpp"

namespace kq {
namespace {

TEST(MistralWindow, EvaluationWindowsFitTheSlidingWindow) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  const auto dir = testing::llama_small_variant(tmp.path / "m", [](nlohmann::json& j) {
    j["model_type"] = "mistral";
    j["sliding_window"] = 64;
  });
  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  auto llama = Model::load(testing::llama_small_dir(), ExecContext{Device::CPU, 2});
  const auto text = testing::spread_ids(200);
  const PerplexityResult r = evaluate_perplexity(*m, text);  // ctx 0: windows of the capped context
  EXPECT_EQ(r.ctx, 64);
  const PerplexityResult l = evaluate_perplexity(*llama, text, 64);  // the same windows on the llama original
  EXPECT_EQ(r.nll, l.nll);
  EXPECT_EQ(r.scored_tokens, l.scored_tokens);
  const std::string e = testing::error_of<InvalidArgument>([&] { evaluate_perplexity(*m, text, 128); });
  EXPECT_TRUE(testing::has(e, "context length (ctx) 128 exceeds the model's maximum of 64 positions")) << e;
  EXPECT_TRUE(testing::has(e, "config.json sliding_window 64")) << e;
  const std::string c = testing::error_of<InvalidArgument>([&] { compare_models(*llama, *m, text, 100); });
  EXPECT_TRUE(testing::has(c, "exceeds the model's maximum of 64 positions (config.json sliding_window 64")) << c;
  // The llama original (512 positions) says nothing of a window.
  const std::string o = testing::error_of<InvalidArgument>([&] { evaluate_perplexity(*llama, text, 1000); });
  EXPECT_FALSE(testing::has(o, "sliding_window")) << o;
}

}  // namespace
}  // namespace kq
