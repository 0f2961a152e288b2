// compare_models: identical models agree exactly; different models against a
// direct double-precision computation of KL divergence and top-1 agreement.
#include <gtest/gtest.h>

#include <cmath>
#include <fstream>
#include <sstream>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;
using kq::testing::shared_dir;

namespace {

std::vector<int32_t> shakespeare_tokens(const std::filesystem::path& model_dir, size_t count) {
  std::ifstream f(shared_dir() / "data/text/shakespeare-test.txt", std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  auto t = Tokenizer::load(model_dir).encode(ss.str());
  t.resize(std::min(t.size(), count));
  return t;
}

}  // namespace

TEST(CompareModels, IdenticalModelsAgree) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const auto dir = shared_dir() / "models/gpt2-tiny";
  auto a = Model::load(dir, ExecContext{Device::CPU, 2});
  auto b = Model::load(dir, ExecContext{Device::CPU, 2});
  const auto tokens = shakespeare_tokens(dir, 1000);
  const ComparisonResult r = compare_models(*a, *b, tokens, 200);
  const PerplexityResult p = evaluate_perplexity(*a, tokens, 200);
  EXPECT_EQ(r.windows, 5);
  EXPECT_EQ(r.scored_tokens, p.scored_tokens);
  EXPECT_NEAR(r.ppl_ref, p.ppl, 1e-9 * p.ppl);
  EXPECT_EQ(r.ppl_ref, r.ppl_cand);
  EXPECT_NEAR(r.mean_kl, 0.0, 1e-12);
  EXPECT_EQ(r.top1_agreement, 1.0);
}

TEST(CompareModels, MatchesDirectComputation) {
  KQ_REQUIRE_SHARED("models/gpt2-small");
  const auto tiny_dir = shared_dir() / "models/gpt2-tiny";
  auto ref = Model::load(shared_dir() / "models/gpt2-small", ExecContext{Device::CPU, 2});
  auto cand = Model::load(tiny_dir, ExecContext{Device::CPU, 2});
  const auto tokens = shakespeare_tokens(tiny_dir, 300);
  const int ctx = 150;
  const int64_t V = ref->config().vocab_size;
  double kl = 0, agree = 0, nll_r = 0, nll_c = 0;
  int64_t scored = 0;
  for (int64_t b = 0; b < 300; b += ctx) {
    std::vector<float> lr(size_t(ctx * V)), lc(lr.size());
    KVCache cr = ref->make_cache(ctx), cc = cand->make_cache(ctx);
    const auto win = std::span(tokens).subspan(size_t(b), size_t(ctx));
    ref->forward(win, cr, lr.data());
    cand->forward(win, cc, lc.data());
    for (int64_t t = 0; t + 1 < ctx; ++t) {
      const float* r = lr.data() + t * V;
      const float* c = lc.data() + t * V;
      auto lse = [&](const float* x) {
        double m = -1e300, s = 0;
        for (int64_t v = 0; v < V; ++v) m = std::max(m, double(x[v]));
        for (int64_t v = 0; v < V; ++v) s += std::exp(double(x[v]) - m);
        return m + std::log(s);
      };
      const double lr_ = lse(r), lc_ = lse(c);
      int64_t ar = 0, ac = 0;
      for (int64_t v = 0; v < V; ++v) {
        const double lp = double(r[v]) - lr_, lq = double(c[v]) - lc_;
        kl += std::exp(lp) * (lp - lq);
        if (r[v] > r[ar]) ar = v;
        if (c[v] > c[ac]) ac = v;
      }
      agree += ar == ac;
      nll_r += lr_ - r[win[size_t(t + 1)]];
      nll_c += lc_ - c[win[size_t(t + 1)]];
      ++scored;
    }
  }
  const ComparisonResult res = compare_models(*ref, *cand, tokens, ctx);
  EXPECT_EQ(res.scored_tokens, scored);
  EXPECT_EQ(res.ctx, ctx);
  EXPECT_NEAR(res.mean_kl, kl / double(scored), 1e-5 * kl / double(scored));
  EXPECT_GT(res.mean_kl, 0.01);  // genuinely different models
  EXPECT_DOUBLE_EQ(res.top1_agreement, agree / double(scored));
  EXPECT_LT(res.top1_agreement, 1.0);
  EXPECT_NEAR(res.nll_ref, nll_r, 1e-6 * nll_r);
  EXPECT_NEAR(res.nll_cand, nll_c, 1e-6 * nll_c);
  EXPECT_NEAR(res.ppl_cand, std::exp(nll_c / double(scored)), 1e-6 * res.ppl_cand);

  // ctx 0 = the smaller context of the two (gpt2-tiny: 256); too long a window is an error.
  EXPECT_EQ(compare_models(*ref, *cand, tokens, 0, 1).ctx, 256);
  EXPECT_THROW(compare_models(*ref, *cand, tokens, 300), InvalidArgument);
}

TEST(CompareModels, RejectsDifferentVocabularies) {
  ModelConfig c = kq::testing::tiny_gpt2_config();
  c.vocab_size = 50;
  auto a = Model::random(c, 1);
  c.vocab_size = 51;
  auto b = Model::random(c, 1);
  const std::vector<int32_t> tokens = {1, 2, 3, 4};
  EXPECT_THROW(compare_models(*a, *b, tokens), InvalidArgument);
}

// tester26: "the text has 1 tokens"; the count is pluralized as the CLI's messages are.
TEST(CompareModels, TooShortTextCountsTokensInEnglish) {
  const ModelConfig c = kq::testing::tiny_gpt2_config();
  auto a = Model::random(c, 1);
  auto b = Model::random(c, 2);
  const std::vector<std::pair<std::vector<int32_t>, std::string>> cases = {
      {{5}, "the text has 1 token, fewer than the 2 needed"}, {{}, "the text has 0 tokens, fewer than the 2 needed"}};
  for (const auto& [tokens, expected] : cases) {
    for (const bool compare : {false, true}) {
      try {
        if (compare)
          (void)compare_models(*a, *b, tokens);
        else
          (void)evaluate_perplexity(*a, tokens);
        ADD_FAILURE() << "accepted " << tokens.size() << " tokens";
      } catch (const InvalidArgument& e) {
        const std::string m = e.what();
        EXPECT_NE(m.find(std::string(compare ? "compare_models: " : "perplexity: ") + expected), std::string::npos)
            << m;
      }
    }
  }
}
