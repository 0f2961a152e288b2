// An evaluation window is one forward pass, as transformers runs it (model(input_ids) over the window), also when
// kq feeds it in chunks of Model::prefill_chunk() rows: for Phi-3's longrope the window's length picks the RoPE
// factors of all its positions. A tiny random Phi-3 (tests/models/phi3_tiny.hpp) of original_max_position_embeddings
// 300 and a window of 400 tokens: the first chunk (positions 0..255) ends within 300 but belongs to a pass that ends
// past it, so it is rotated with the long factors; evaluate_perplexity's total NLL is that of one Model::forward
// call over the window, and not that of the chunks run as passes of their own.
#include <gtest/gtest.h>

#include <cmath>
#include <span>
#include <vector>

#include "common/test_data.hpp"
#include "eval/window_runner.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "models/phi3_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

/// Σ over rows i < n − 1 of −log softmax(logits[i])[tokens[i + 1]] for logits [n, vocab].
double total_nll(const std::vector<float>& logits, const std::vector<int32_t>& tokens, int64_t vocab) {
  double nll = 0;
  for (size_t i = 0; i + 1 < tokens.size(); ++i)
    nll += eval::token_nll(logits.data() + i * size_t(vocab), vocab, tokens[i + 1]);
  return nll;
}

TEST(LongRopeWindow, AWindowInChunksIsOnePass) {
  testing::TinyPhi3 s;
  s.max_positions = 600;
  s.original_max_positions = 300;
  testing::TempDir tmp;
  auto m = testing::load_quietly(
      testing::write_model_folder(tmp.path / "phi3", testing::tiny_phi3_config(s), testing::tiny_phi3_tensors(s)));
  const int64_t n = 400, V = s.vocab;
  ASSERT_GT(n, Model::prefill_chunk());
  ASSERT_LT(Model::prefill_chunk(), s.original_max_positions);
  const auto tokens = testing::tokens_of(size_t(n), V);
  // One forward() call over the window (chunked inside, one pass).
  std::vector<float> one(size_t(n * V)), apart(size_t(n * V));
  KVCache cache = m->make_cache(n);
  m->forward(tokens, cache, one.data(), true);
  // The same chunks as separate passes (no pass_end): the first with the short factors.
  cache.reset();
  const int64_t chunk = Model::prefill_chunk();
  m->forward(std::span(tokens).first(size_t(chunk)), cache, apart.data(), true);
  m->forward(std::span(tokens).subspan(size_t(chunk)), cache, apart.data() + chunk * V, true);
  const double want = total_nll(one, tokens, V), separate = total_nll(apart, tokens, V);
  const PerplexityResult r = evaluate_perplexity(*m, tokens, int(n));
  ASSERT_EQ(r.windows, 1);
  ASSERT_EQ(r.scored_tokens, n - 1);
  std::printf("longrope window: perplexity NLL %.9g, one pass %.9g, chunks as passes %.9g\n", r.nll, want, separate);
  EXPECT_NEAR(r.nll, want, 1e-9 * want);
  // The other reading is far outside that tolerance (0.44 nats here), its first chunk's logits by 3%.
  EXPECT_GT(std::fabs(separate - want), 1e-5 * want);
  EXPECT_GT(testing::rel_l2(std::span(apart).first(size_t(chunk * V)), std::span(one).first(size_t(chunk * V))), 1e-3);
}

}  // namespace
}  // namespace kq
