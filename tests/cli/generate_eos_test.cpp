// `kq generate` stops at the model's end-of-sequence token(s): eos_token_id of
// generation_config.json, else config.json (an int or a list), as Hugging Face
// transformers does; --ignore-eos keeps going. Checked on copies of the shipped
// demo model whose EOS is set to the tokens the model greedily produces.
#include <gtest/gtest.h>

#include <algorithm>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"

using kq::testing::demo_model;
using kq::testing::read_all;
using kq::testing::run_kq;

namespace {

namespace fs = std::filesystem;

const char* const kPrompt = "Once upon a time";

using kq::testing::has;

/// The first `n` tokens the demo model produces greedily (argmax) after kPrompt.
std::vector<int32_t> greedy_tokens(int n) {
  auto model = kq::Model::load(demo_model(), kq::ExecContext{kq::Device::CPU, 1});
  const kq::Tokenizer tok = kq::Tokenizer::load(demo_model());
  std::vector<int32_t> ids = tok.encode(kPrompt);
  const size_t vocab = size_t(model->config().vocab_size);
  kq::KVCache cache = model->make_cache(int64_t(ids.size()) + n);
  std::vector<float> logits(vocab);
  model->forward(ids, cache, logits.data(), /*all_logits=*/false);
  std::vector<int32_t> out;
  for (int i = 0; i < n; ++i) {
    const int32_t next = int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
    out.push_back(next);
    model->forward(std::span(&next, 1), cache, logits.data());
  }
  return out;
}

/// A copy of the demo model with eos_token_id set in config.json (and in
/// generation_config.json, or that file removed when `gen` is null).
fs::path model_copy(const fs::path& dir, const nlohmann::json& config_eos, const nlohmann::json* gen) {
  fs::copy(demo_model(), dir, fs::copy_options::recursive);
  auto set = [&](const fs::path& f, const nlohmann::json& v) {
    nlohmann::json j = nlohmann::json::parse(read_all(f));
    j["eos_token_id"] = v;
    std::ofstream(f) << j.dump(2);
  };
  set(dir / "config.json", config_eos);
  if (gen)
    set(dir / "generation_config.json", *gen);
  else
    fs::remove(dir / "generation_config.json");
  return dir;
}

kq::testing::CliResult generate(const fs::path& model, int n, bool ignore_eos = false) {
  std::vector<std::string> args{"generate", "-m",     model.string(), "--prompt", kPrompt, "-n", std::to_string(n),
                                "--no-echo", "--threads", "1"};
  if (ignore_eos) args.push_back("--ignore-eos");
  return run_kq(args);
}

}  // namespace

TEST(CliGenerateEos, StopsAtConfigEosWithoutPrintingIt) {
  const std::vector<int32_t> g = greedy_tokens(6);
  // The shipped model's EOS (<|endoftext|>, id 0) must not come first, or the
  // baseline below would already stop.
  ASSERT_NE(g[0], 0) << "the demo model's first greedy token is its own EOS; choose another prompt";
  const auto base = generate(demo_model(), 6, /*ignore_eos=*/true);
  ASSERT_EQ(base.status, 0) << base.err;
  ASSERT_GT(base.out.size(), 1u) << "the demo model generated no text";

  kq::testing::TempDir tmp;
  const fs::path m = model_copy(tmp.path / "eos-first", g[0], nullptr);  // config.json only
  const auto r = generate(m, 6);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "\n") << "generation went past eos_token_id " << g[0];
  EXPECT_TRUE(has(r.err, "generated 0 tokens")) << r.err;
  EXPECT_TRUE(has(r.err, "stopped at end-of-sequence token " + std::to_string(g[0]))) << r.err;
  // --ignore-eos: the same text as the model without that EOS.
  const auto ig = generate(m, 6, /*ignore_eos=*/true);
  EXPECT_EQ(ig.status, 0) << ig.err;
  EXPECT_EQ(ig.out, base.out);
  EXPECT_FALSE(has(ig.err, "stopped at")) << ig.err;
}

TEST(CliGenerateEos, GenerationConfigListTakesPrecedence) {
  const std::vector<int32_t> g = greedy_tokens(6);
  // j: the first greedy token that differs from the first; EOS = g[j] stops after j tokens.
  size_t j = 1;
  while (j < g.size() && g[j] == g[0]) ++j;
  if (j == g.size()) GTEST_SKIP() << "the demo model repeats one token greedily; no second token to stop at";
  const auto want = generate(demo_model(), int(j), /*ignore_eos=*/true);
  ASSERT_EQ(want.status, 0) << want.err;

  // config.json says g[0] (would stop at once); generation_config.json's list wins.
  kq::testing::TempDir tmp;
  const nlohmann::json gen = nlohmann::json::array({8191, g[j]});
  const fs::path m = model_copy(tmp.path / "eos-list", g[0], &gen);
  const auto r = generate(m, 6);
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, want.out) << "expected the " << j << " token(s) before EOS " << g[j];
  EXPECT_TRUE(has(r.err, "generated " + std::to_string(j) + (j == 1 ? " token," : " tokens,"))) << r.err;
  EXPECT_TRUE(has(r.err, "stopped at end-of-sequence token " + std::to_string(g[j]))) << r.err;
}

TEST(CliGenerateEos, BadEosTokenIdIsAnErrorNamingTheFile) {
  kq::testing::TempDir tmp;
  const nlohmann::json bad = "two";
  const fs::path m = model_copy(tmp.path / "bad", 0, &bad);
  const auto r = generate(m, 4);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "generation_config.json")) << r.err;
  EXPECT_TRUE(has(r.err, "eos_token_id")) << r.err;
  EXPECT_TRUE(r.out.empty()) << r.out;
}
