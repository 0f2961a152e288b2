// The evaluation's buffers (KV cache, attention scratch) are sized to the
// longest window scored, min(ctx, text tokens), not to ctx: a model whose
// config says 10^6 positions scoring 1,655 tokens held a 10^6-token cache
// (4.8 GB). The windows, scored tokens and perplexity are unchanged.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "eval/window_runner.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;
using kq::testing::shared_dir;

TEST(WindowCapacity, IsTheLongestWindowNotCtx) {
  // 1,655 tokens, the model's context 10^6: one window of 1,655 tokens.
  EXPECT_EQ(eval::window_capacity(perplexity_windows(1655, 1000000)), 1655);
  EXPECT_EQ(eval::window_capacity(perplexity_windows(1655, 2048)), 1655);
  // More tokens than ctx: full windows of ctx (a short last one does not matter).
  EXPECT_EQ(eval::window_capacity(perplexity_windows(5000, 2048)), 2048);
  EXPECT_EQ(eval::window_capacity(perplexity_windows(4097, 2048)), 2048);  // last 1-token window dropped
  EXPECT_EQ(eval::window_capacity(perplexity_windows(2, 1 << 30)), 2);
  // --samples: only the windows scored count.
  EXPECT_EQ(eval::window_capacity(perplexity_windows(10, 4, 1)), 4);
  EXPECT_EQ(eval::window_capacity(perplexity_windows(1, 4)), 0);  // no window at all
}

TEST(WindowCapacity, RunnerHoldsOnlyWhatItNeeds) {
  auto model = Model::load(kq::testing::demo_model());
  eval::WindowRunner runner(*model, 40);
  EXPECT_EQ(runner.capacity(), 40);
  // Logits rows: no more than a window has (tester round 23: --ctx 8 with a vocabulary of 4M held the logits of
  // 256 rows, 4 GiB), at most prefill_chunk() for a longer one.
  EXPECT_EQ(runner.rows(), 40);
  EXPECT_EQ(eval::WindowRunner(*model, 2).rows(), 2);
  ModelConfig c = kq::testing::tiny_gpt2_config();
  c.max_positions = Model::prefill_chunk() + 44;
  auto longer = Model::random(c, 1);
  EXPECT_EQ(eval::WindowRunner(*longer, Model::prefill_chunk() + 1).rows(), Model::prefill_chunk());
  EXPECT_THROW(eval::WindowRunner(*model, 0), InvalidArgument);  // 0 would mean the whole context
  EXPECT_THROW(eval::WindowRunner(*model, model->config().max_positions + 1), InvalidArgument);
}

// A llama-small copy whose config allows 65,536 positions scores 700 tokens at
// the default ctx (the model's context): one window of 700 tokens, the same
// numbers as an explicit --ctx 700 and as a direct forward pass over a cache of 700.
TEST(WindowCapacity, PerplexityUnchangedAtTheModelsHugeContext) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto src = shared_dir() / "models/llama-small";
  kq::testing::TempDir tmp;
  for (const auto& e : std::filesystem::directory_iterator(src))
    if (e.path().filename() != "config.json") std::filesystem::create_symlink(e.path(), tmp.path / e.path().filename());
  nlohmann::json config = nlohmann::json::parse(std::ifstream(src / "config.json"));
  config["max_position_embeddings"] = 65536;
  std::ofstream(tmp.path / "config.json") << config.dump(2);

  auto model = Model::load(tmp.path, ExecContext{Device::CPU, 2});
  ASSERT_EQ(model->config().max_positions, 65536);
  std::ifstream f(shared_dir() / "data/text/shakespeare-test.txt", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  std::vector<int32_t> tokens = Tokenizer::load(tmp.path).encode(ss.str());
  ASSERT_GE(tokens.size(), 700u);
  tokens.resize(700);

  const PerplexityResult whole = evaluate_perplexity(*model, tokens, 0);
  EXPECT_EQ(whole.ctx, 65536);  // the window length reported is still the protocol's ctx
  EXPECT_EQ(whole.windows, 1);
  EXPECT_EQ(whole.scored_tokens, 699);
  const PerplexityResult explicit_ctx = evaluate_perplexity(*model, tokens, 700);
  EXPECT_EQ(explicit_ctx.nll, whole.nll);

  const int64_t V = model->config().vocab_size;
  std::vector<float> logits(size_t(700 * V));
  KVCache cache = model->make_cache(700);
  model->forward(tokens, cache, logits.data());
  double nll = 0;
  for (int64_t t = 1; t < 700; ++t) nll += eval::token_nll(logits.data() + (t - 1) * V, V, tokens[size_t(t)]);
  EXPECT_NEAR(whole.nll, nll, 1e-6 * nll);

  const ComparisonResult c = compare_models(*model, *model, tokens, 0);
  EXPECT_EQ(c.windows, 1);
  EXPECT_EQ(c.scored_tokens, 699);
  EXPECT_NEAR(c.nll_ref, whole.nll, 1e-9 * nll);
}
