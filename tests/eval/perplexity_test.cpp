// Perplexity protocol (docs/EVALUATION.md) and the reference FP32 perplexities
// of the shared test models (models/README.md).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <ostream>
#include <sstream>
#include <string>

#include "common/test_util.hpp"
#include "common/test_data.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;
using kq::testing::shared_dir;

namespace {

std::vector<int32_t> tokenize_file(const std::filesystem::path& model_dir, const std::string& text_rel) {
  std::ifstream f(shared_dir() / text_rel, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return Tokenizer::load(model_dir).encode(ss.str());
}

struct PplCase {
  const char* model;
  const char* text;
  double ppl;
  int64_t scored;
  bool long_test;  // full WikiText-2 on the larger models: only with KQ_LONG_TESTS=1
};

void PrintTo(const PplCase& c, std::ostream* os) { *os << c.model << " on " << c.text; }

std::string case_name(const ::testing::TestParamInfo<PplCase>& p) {
  std::string s = std::string(p.param.model) + "_" +
                  (std::string(p.param.text).find("wiki") != std::string::npos ? "wikitext2" : "shakespeare");
  for (char& c : s)
    if (c == '-') c = '_';
  return s;
}

}  // namespace

TEST(PerplexityWindows, FollowTheProtocol) {
  auto w = perplexity_windows(10, 4);
  ASSERT_EQ(w.size(), 3u);
  EXPECT_EQ(w[0].begin, 0);
  EXPECT_EQ(w[0].end, 4);
  EXPECT_EQ(w[2].begin, 8);
  EXPECT_EQ(w[2].end, 10);                         // shorter last window
  EXPECT_EQ(perplexity_windows(9, 4).size(), 2u);  // a 1-token last window is dropped
  EXPECT_EQ(perplexity_windows(8, 4).size(), 2u);
  EXPECT_EQ(perplexity_windows(10, 4, 2).size(), 2u);
  EXPECT_TRUE(perplexity_windows(1, 4).empty());
  EXPECT_THROW(perplexity_windows(10, 1), InvalidArgument);
  EXPECT_THROW(perplexity_windows(10, 4, -1), InvalidArgument);
}

// Weights that overflow (finite on disk, so accepted at load) give non-finite
// logits: a clear error, never a NaN perplexity reported as a result.
TEST(Perplexity, OverflowingWeightsAreAnError) {
  const auto dir = kq::testing::demo_model();
  auto model = Model::load(dir);
  for (const LinearSlot& s : model->linear_layers())
    if (s.name == "transformer.h.0.attn.c_attn") {
      Tensor w = (*s.op)->dequantized_weight();
      float* p = w.mutable_data<float>();
      for (int i = 0; i < 100; ++i) p[i] = 3e38f;
      *s.op = make_linear_f32(w, (*s.op)->bias());
    }
  std::vector<int32_t> tokens(64);
  for (size_t i = 0; i < tokens.size(); ++i) tokens[i] = int32_t(i * 7 % 100);
  try {
    evaluate_perplexity(*model, tokens, 32, 0);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("non-finite logits"), std::string::npos) << e.what();
  }
}

TEST(Perplexity, MatchesDirectComputationFromLogits) {
  KQ_REQUIRE_SHARED("models/llama-small");
  // Windows of 300 tokens: two forward chunks per window, the last window short.
  const auto dir = shared_dir() / "models/llama-small";
  auto model = Model::load(dir, ExecContext{Device::CPU, 2});
  auto tokens = tokenize_file(dir, "data/text/shakespeare-test.txt");
  tokens.resize(700);
  const int ctx = 300;
  const int64_t V = model->config().vocab_size;
  double nll = 0;
  int64_t scored = 0;
  for (int64_t b = 0; b < 700; b += ctx) {
    const int64_t len = std::min<int64_t>(ctx, 700 - b);
    std::vector<float> logits(size_t(len * V));
    KVCache cache = model->make_cache(len);
    model->forward(std::span(tokens).subspan(size_t(b), size_t(len)), cache, logits.data());
    for (int64_t t = 1; t < len; ++t) {
      const float* row = logits.data() + (t - 1) * V;
      double mx = -1e300, sum = 0;
      for (int64_t v = 0; v < V; ++v) mx = std::max(mx, double(row[v]));
      for (int64_t v = 0; v < V; ++v) sum += std::exp(double(row[v]) - mx);
      nll += mx + std::log(sum) - row[tokens[size_t(b + t)]];
      ++scored;
    }
  }
  int64_t calls = 0;
  const PerplexityResult r = evaluate_perplexity(*model, tokens, ctx, 0, [&](int64_t done, int64_t total) {
    ++calls;
    EXPECT_EQ(total, 3);
    EXPECT_EQ(done, calls);
  });
  EXPECT_EQ(calls, 3);
  EXPECT_EQ(r.windows, 3);
  EXPECT_EQ(r.ctx, ctx);
  EXPECT_EQ(r.scored_tokens, scored);
  EXPECT_NEAR(r.nll, nll, 1e-6 * nll);
  EXPECT_NEAR(r.ppl, std::exp(nll / double(scored)), 1e-6 * r.ppl);
  EXPECT_NEAR(r.mean_nll(), nll / double(scored), 1e-9 * nll);

  // max_windows and the errors
  EXPECT_EQ(evaluate_perplexity(*model, tokens, ctx, 1).scored_tokens, ctx - 1);
  EXPECT_THROW(evaluate_perplexity(*model, tokens, 513), InvalidArgument);
  EXPECT_THROW(evaluate_perplexity(*model, tokens, 1), InvalidArgument);
  EXPECT_THROW(evaluate_perplexity(*model, std::span(tokens).first(1), 0), InvalidArgument);
}

class ReferencePerplexity : public ::testing::TestWithParam<PplCase> {};

TEST_P(ReferencePerplexity, MatchesReadme) {
  const PplCase c = GetParam();
  const std::string rel = std::string("models/") + c.model;
  KQ_REQUIRE_SHARED(rel);
  const char* long_env = std::getenv("KQ_LONG_TESTS");
  if (c.long_test && !(long_env && std::string(long_env) == "1"))
    GTEST_SKIP() << "full WikiText-2 on " << c.model << " is a long test: set KQ_LONG_TESTS=1";
  const auto dir = shared_dir() / rel;
  // One thread: ctest runs test programs in parallel, and OpenMP teams on an
  // oversubscribed machine lose more at every barrier than they gain.
  auto model = Model::load(dir, ExecContext{Device::CPU, 1});
  const auto tokens = tokenize_file(dir, c.text);
  const PerplexityResult r = evaluate_perplexity(*model, tokens);
  std::printf("%s on %s: PPL %.4f over %lld tokens (reference %.3f), %lld windows of %d, %.1f s\n", c.model,
              c.text, r.ppl, static_cast<long long>(r.scored_tokens), c.ppl,
              static_cast<long long>(r.windows), r.ctx, r.seconds);
  EXPECT_EQ(r.scored_tokens, c.scored);
  EXPECT_EQ(r.ctx, model->config().max_positions);
  EXPECT_LE(std::fabs(r.ppl / c.ppl - 1.0), 1e-4) << "PPL " << r.ppl << " vs reference " << c.ppl;
}

INSTANTIATE_TEST_SUITE_P(
    SharedModels, ReferencePerplexity,
    ::testing::Values(PplCase{"gpt2-tiny", "data/text/shakespeare-test.txt", 87.446, 42419, false},
                      PplCase{"gpt2-small", "data/text/shakespeare-test.txt", 35.120, 42502, false},
                      PplCase{"llama-small", "data/text/shakespeare-test.txt", 34.801, 42502, false},
                      PplCase{"gpt2-tiny", "data/text/wikitext-2-test.txt", 84.511, 385125, false},
                      PplCase{"gpt2-small", "data/text/wikitext-2-test.txt", 36.396, 385880, true},
                      PplCase{"llama-small", "data/text/wikitext-2-test.txt", 37.349, 385880, true}),
    case_name);
