// Evaluation windows longer than a model's sliding window (ModelConfig::sliding_window): the perplexity of a tiny
// random Mistral (window 7) over evaluation windows of 40 tokens is that of a double-precision forward with
// transformers' sliding_window_causal mask (tests/models/sliding_window_tiny.hpp); the context of a Mistral copy
// of llama-small is its max_position_embeddings, and messages about it say nothing of the window.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "models/llama_variant.hpp"
#include "models/sliding_window_tiny.hpp"

namespace kq {
namespace {

/// Σ −log softmax(logits[i])[tokens[i + 1]] over the rows of `logits` [n, vocab] (double).
double nll_of(const std::vector<double>& logits, const std::vector<int32_t>& tokens, int64_t vocab) {
  double nll = 0;
  for (size_t i = 0; i + 1 < tokens.size(); ++i) {
    const double* row = logits.data() + i * size_t(vocab);
    const double mx = *std::max_element(row, row + vocab);
    double sum = 0;
    for (int64_t v = 0; v < vocab; ++v) sum += std::exp(row[v] - mx);
    nll -= row[tokens[i + 1]] - mx - std::log(sum);
  }
  return nll;
}

TEST(MistralWindow, PerplexityWithEvaluationWindowsLongerThanTheSlidingWindowMatchesADoubleReference) {
  const testing::TinyWindowed s;  // window 7 on every layer
  const auto tensors = testing::tiny_windowed_tensors(s);
  testing::TempDir tmp;
  auto m = Model::load(testing::write_model_folder(tmp.path / "m", testing::tiny_windowed_config(s), tensors),
                       ExecContext{Device::CPU, 2});
  std::vector<int32_t> text(100);
  for (size_t i = 0; i < text.size(); ++i) text[i] = int32_t((i * 53 + 7) % size_t(s.vocab));
  const PerplexityResult r = evaluate_perplexity(*m, text, 40);  // windows [0, 40), [40, 80), [80, 100)
  EXPECT_EQ(r.ctx, 40);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.scored_tokens, 39 + 39 + 19);
  double want = 0, full = 0;  // each evaluation window from position 0, as the perplexity protocol runs it
  for (size_t b = 0; b < text.size(); b += 40) {
    const std::vector<int32_t> w(text.begin() + std::ptrdiff_t(b),
                                 text.begin() + std::ptrdiff_t(std::min(text.size(), b + 40)));
    want += nll_of(testing::windowed_reference_logits(tensors, s, w, s.windows()), w, s.vocab);
    full += nll_of(testing::windowed_reference_logits(tensors, s, w, {0, 0, 0}), w, s.vocab);
  }
  std::printf("tiny mistral window 7, ctx 40: NLL %.9g, double reference %.9g (no window: %.9g)\n", r.nll, want,
              full);
  // F32 logits: the NLL agrees to about 1e-6 (of 465 nats); without the windows it is 0.06 off (the random
  // model's next-token distributions are nearly uniform, so the window moves the total only a little).
  EXPECT_NEAR(r.nll, want, 1e-4);
  EXPECT_GT(std::abs(full - want), 1e-2);  // the window matters, far beyond the tolerance
  EXPECT_NEAR(r.ppl, std::exp(want / double(r.scored_tokens)), 1e-6 * r.ppl);
  // ctx 0: the whole context (max_position_embeddings 256), not the window.
  EXPECT_EQ(evaluate_perplexity(*m, text).ctx, 256);
}

TEST(MistralWindow, TheContextIsMaxPositionEmbeddingsAndMessagesSayNothingOfTheWindow) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  const auto dir = testing::llama_small_variant(tmp.path / "m", [](nlohmann::json& j) {
    j["model_type"] = "mistral";
    j["sliding_window"] = 64;
  });
  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  EXPECT_EQ(m->config().max_positions, 512);
  const auto text = testing::spread_ids(300);
  const PerplexityResult r = evaluate_perplexity(*m, text, 0, 1);  // one window of the whole text, past the window
  EXPECT_EQ(r.ctx, 512);
  EXPECT_EQ(r.scored_tokens, 299);
  const std::string e = testing::error_of<InvalidArgument>([&] { evaluate_perplexity(*m, text, 1000); });
  EXPECT_TRUE(testing::has(e, "context length (ctx) 1000 exceeds the model's maximum of 512 positions")) << e;
  EXPECT_FALSE(testing::has(e, "sliding_window")) << e;
}

}  // namespace
}  // namespace kq
