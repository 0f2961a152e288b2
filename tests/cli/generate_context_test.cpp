// `kq generate` fits the model's context exactly: the prompt takes a position
// per token and each generated token but the last is fed back, so n >= 1 new
// tokens need prompt + n - 1 <= context positions and n = 0 needs prompt <=
// context. A prompt of exactly the context with -n 0 or -n 1 was refused by one
// token ("at most 255 prompt tokens" on the 256-position demo model).
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::count;
using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq;

namespace {

constexpr int kDemoPositions = 256;  // max_position_embeddings of models/gpt2-tiny

/// A prompt of `tokens` tokens (" the" is one token of the demo tokenizer).
std::string prompt_of(int tokens) {
  std::string p;
  for (int i = 0; i < tokens; ++i) p += " the";
  return p;
}

kq::testing::CliResult generate(int prompt_tokens, int n) {
  return run_kq({"generate", "--model", demo_model().string(), "--prompt", prompt_of(prompt_tokens), "-n",
                 std::to_string(n), "--threads", "1", "--no-echo", "--ignore-eos"});
}

TEST(CliGenerateContext, PromptOfTheWholeContextGeneratesZeroOrOneToken) {
  auto r = generate(kDemoPositions, 0);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: prompt 256 tokens; -n 0: nothing generated")) << r.err;
  EXPECT_FALSE(has(r.err, "warning")) << r.err;

  r = generate(kDemoPositions, 1);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: prompt 256 tokens")) << r.err;
  EXPECT_TRUE(has(r.err, "generated 1 token,")) << r.err;
  EXPECT_FALSE(has(r.err, "warning")) << r.err;
}

TEST(CliGenerateContext, OneTokenMoreDoesNotFit) {
  // A prompt longer than the context: refused, whatever -n.
  for (const int n : {0, 1}) {
    const auto r = generate(kDemoPositions + 1, n);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "--prompt has 257 tokens; the model's context is 256 positions (at most 256 prompt "
                           "tokens)"))
        << r.err;
  }
  // prompt + n - 1 = context + 1: -n is reduced by one, with the warning.
  const auto r = generate(kDemoPositions, 2);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(count(r.err, "kq: warning: -n/--max-new-tokens: generating at most 1 token instead of the requested 2: "
                         "the prompt's 256 tokens leave 0 of the model's 256 positions (the last generated token "
                         "needs none)"),
            1u)
      << r.err;
  EXPECT_TRUE(has(r.err, "generated 1 token,")) << r.err;
}

TEST(CliGenerateContext, PromptPlusNMinusOneEqualToTheContextFits) {
  const auto r = generate(kDemoPositions - 2, 3);  // 254 + 3 - 1 = 256
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "generated 3 tokens,")) << r.err;
  EXPECT_FALSE(has(r.err, "warning")) << r.err;
}

}  // namespace
