// Sampler: greedy, temperature, top-k, top-p against exact probabilities.
#include <gtest/gtest.h>

#include <cmath>
#include <vector>

#include "kq/error.hpp"
#include "kq/eval.hpp"

using namespace kq;

namespace {

// Frequencies of each id over `draws` samples.
std::vector<double> frequencies(const SamplingParams& p, const std::vector<float>& logits, int draws) {
  Sampler s(p);
  std::vector<double> f(logits.size());
  for (int i = 0; i < draws; ++i) f[size_t(s.sample(logits))] += 1.0 / draws;
  return f;
}

const std::vector<float> kLogits = {std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};

}  // namespace

TEST(Sampler, GreedyIsArgmax) {
  const std::vector<float> l = {0.1f, 2.0f, -1.0f, 2.0f};
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.sample(l), 1);  // first of the tied maxima
  Sampler top1(SamplingParams{.temperature = 5.0f, .top_k = 1});
  for (int i = 0; i < 10; ++i) EXPECT_EQ(top1.sample(l), 1);
}

TEST(Sampler, NanOrPlusInfinityLogitsAreAnError) {
  for (float bad : {NAN, INFINITY}) {
    const std::vector<float> l = {0.1f, bad, -1.0f};
    Sampler greedy(SamplingParams{});
    EXPECT_THROW(greedy.sample(l), Error) << bad;
    Sampler warm(SamplingParams{.temperature = 0.7f});
    EXPECT_THROW(warm.sample(l), Error) << bad;
  }
}

// -inf is the usual way to ban a token (API-user finding: it was an error
// blaming the model's weights): never sampled, greedy or not.
TEST(Sampler, MinusInfinityMasksItsToken) {
  const std::vector<float> l = {-INFINITY, 1.0f, 2.0f, -INFINITY};
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.sample(l), 2);
  const std::vector<float> top_masked = {3.0f, 1.0f, -INFINITY};
  Sampler warm(SamplingParams{.temperature = 1.0f, .top_k = 3, .seed = 3});
  for (int i = 0; i < 2000; ++i) EXPECT_NE(warm.sample(top_masked), 2);
  const std::vector<float> all = {-INFINITY, -INFINITY};
  EXPECT_THROW(greedy.sample(all), InvalidArgument);
  EXPECT_THROW(warm.sample(all), InvalidArgument);
}

TEST(Sampler, TemperatureOneFollowsSoftmax) {
  const auto f = frequencies({.temperature = 1.0f, .seed = 1}, kLogits, 40000);
  const double p[] = {0.5, 0.3, 0.15, 0.05};
  for (size_t i = 0; i < 4; ++i) EXPECT_NEAR(f[i], p[i], 0.012) << i;
}

TEST(Sampler, TemperatureSharpens) {
  // T = 0.5 squares the probabilities: 0.25, 0.09, 0.0225, 0.0025 (normalized).
  const auto f = frequencies({.temperature = 0.5f, .seed = 2}, kLogits, 40000);
  const double z = 0.25 + 0.09 + 0.0225 + 0.0025;
  EXPECT_NEAR(f[0], 0.25 / z, 0.012);
  EXPECT_NEAR(f[1], 0.09 / z, 0.012);
}

TEST(Sampler, TopKAndTopP) {
  auto f = frequencies({.temperature = 1.0f, .top_k = 2, .seed = 3}, kLogits, 40000);
  EXPECT_NEAR(f[0], 0.5 / 0.8, 0.012);
  EXPECT_NEAR(f[1], 0.3 / 0.8, 0.012);
  EXPECT_EQ(f[2] + f[3], 0.0);
  // top_p 0.85: 0.5 + 0.3 < 0.85 <= 0.5 + 0.3 + 0.15 keeps three tokens.
  f = frequencies({.temperature = 1.0f, .top_p = 0.85f, .seed = 4}, kLogits, 40000);
  EXPECT_NEAR(f[2], 0.15 / 0.95, 0.012);
  EXPECT_EQ(f[3], 0.0);
  // top_p 0.45: the first token alone reaches it.
  f = frequencies({.temperature = 1.0f, .top_p = 0.45f, .seed = 5}, kLogits, 1000);
  EXPECT_NEAR(f[0], 1.0, 1e-9);
}

TEST(Sampler, SeedReproducesAndValidates) {
  std::vector<float> l(1000);
  for (size_t i = 0; i < l.size(); ++i) l[i] = std::sin(float(i));
  Sampler a({.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .seed = 7});
  Sampler b({.temperature = 0.8f, .top_k = 50, .top_p = 0.9f, .seed = 7});
  for (int i = 0; i < 100; ++i) EXPECT_EQ(a.sample(l), b.sample(l));
  EXPECT_THROW(Sampler({.temperature = -1.0f}), InvalidArgument);
  EXPECT_THROW(Sampler({.temperature = NAN}), InvalidArgument);
  EXPECT_THROW(Sampler({.top_k = -2}), InvalidArgument);
  EXPECT_THROW(Sampler({.top_p = 0.0f}), InvalidArgument);
  EXPECT_THROW(Sampler({.top_p = 1.5f}), InvalidArgument);
  Sampler s({});
  EXPECT_THROW(s.sample({}), InvalidArgument);
}

// Repetition penalty (CTRL, Keskar et al. 2019, as transformers' RepetitionPenaltyLogitsProcessor applies it):
// each distinct id seen once, positive logits divided, negative multiplied, against hand-computed values.
TEST(RepetitionPenalty, DividesPositiveAndMultipliesNegativeLogitsOfSeenTokensOnce) {
  std::vector<float> l = {2.0f, -1.0f, 0.0f, 3.0f, -INFINITY, 0.5f};
  const std::vector<int32_t> seen = {0, 1, 0, 2, 0, 4, 1};  // 0 three times, 1 twice: penalized once each
  apply_repetition_penalty(l, seen, 2.0f);
  EXPECT_EQ(l[0], 1.0f);    // 2 / 2
  EXPECT_EQ(l[1], -2.0f);   // -1 * 2
  EXPECT_EQ(l[2], 0.0f);    // 0 stays
  EXPECT_EQ(l[3], 3.0f);    // not seen
  EXPECT_EQ(l[4], -INFINITY);
  EXPECT_EQ(l[5], 0.5f);    // not seen
  // A penalty below 1 favours repeats the same way (transformers allows any penalty > 0).
  std::vector<float> m = {4.0f, -4.0f};
  apply_repetition_penalty(m, std::vector<int32_t>{0, 1}, 0.5f);
  EXPECT_EQ(m[0], 8.0f);
  EXPECT_EQ(m[1], -2.0f);
  // 1 = off: nothing changes.
  std::vector<float> o = {1.5f, -2.5f};
  apply_repetition_penalty(o, std::vector<int32_t>{0, 1}, 1.0f);
  EXPECT_EQ(o, (std::vector<float>{1.5f, -2.5f}));
}

TEST(RepetitionPenalty, ChangesTheGreedyChoice) {
  // Token 1 leads (1.2 > 1.0); once it is in the sequence its logit is 1.2 / 1.3 = 0.923 < 1.0: token 0 wins.
  std::vector<float> l = {1.0f, 1.2f, -0.5f};
  Sampler greedy(SamplingParams{});
  EXPECT_EQ(greedy.sample(l), 1);
  apply_repetition_penalty(l, std::vector<int32_t>{1}, 1.3f);
  EXPECT_FLOAT_EQ(l[1], 1.2f / 1.3f);
  EXPECT_EQ(greedy.sample(l), 0);
}

TEST(RepetitionPenalty, BadPenaltyOrIdIsAnError) {
  std::vector<float> l = {1.0f, 2.0f};
  for (const float p : {0.0f, -1.0f, NAN, INFINITY})
    EXPECT_THROW(apply_repetition_penalty(l, std::vector<int32_t>{0}, p), InvalidArgument) << p;
  EXPECT_THROW(apply_repetition_penalty(l, std::vector<int32_t>{2}, 1.5f), InvalidArgument);
  EXPECT_THROW(apply_repetition_penalty(l, std::vector<int32_t>{-1}, 1.5f), InvalidArgument);
  EXPECT_EQ(l, (std::vector<float>{1.0f, 2.0f}));
}
