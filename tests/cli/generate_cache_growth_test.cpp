// `kq generate` on the CPU starts with a KV cache for the prompt and a chunk of tokens and grows it as it
// generates (KVCache::reserve): memory and time follow the tokens generated, not -n. It reserved and filled
// the cache for all of -n (up to the context) before the first token: a model whose context is 2^31 - 1
// positions took 19 GB and a minute for -n 4000000 even when the first token was the end-of-sequence one,
// and -n 2^30 was refused as larger than the machine's memory.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"

using kq::testing::has;
using kq::testing::read_all;
using kq::testing::run_kq;

namespace {

namespace fs = std::filesystem;

const char* const kPrompt = "Once upon a time";

/// What `kq generate -m dir --prompt kPrompt -n n --no-echo --no-special-prefix --ignore-eos` with
/// `params` prints on stdout, computed with a KV cache of every position from the start.
std::string reference_text(const fs::path& dir, int64_t n, const kq::SamplingParams& params,
                           std::vector<int32_t>* tokens = nullptr) {
  auto model = kq::Model::load(dir, kq::ExecContext{kq::Device::CPU, 1});
  const kq::Tokenizer tok = kq::Tokenizer::load(dir, kq::LoadOptions{.puts_prompt_prefix = true})
                                .for_model(model->config().vocab_size, dir.string());
  const std::vector<int32_t> prompt = tok.encode(kPrompt);
  kq::KVCache cache = model->make_cache(int64_t(prompt.size()) + n - 1);
  std::vector<float> logits(size_t(model->config().vocab_size));
  kq::Sampler sampler(params);
  kq::StreamDecoder out(tok, kq::StreamDecoder::InvalidBytes::Replace);
  std::string text;
  model->forward(prompt, cache, logits.data(), /*all_logits=*/false);
  for (int64_t i = 0; i < n; ++i) {
    const int32_t next = sampler.sample(logits);
    if (tokens) tokens->push_back(next);
    text += out.push(next);
    if (i + 1 < n) model->forward(std::span(&next, 1), cache, logits.data());
  }
  return text + out.flush() + "\n";
}

}  // namespace

// 400 sampled tokens after a 4-5 token prompt: the cache starts at the prompt + 256 positions and grows once;
// the text must be the one of a cache that held every position from the start (same seed, same tokens).
TEST(CliGenerateCacheGrowth, TokensAcrossAGrowthAreThoseOfAFullCache) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const fs::path m = kq::testing::shared_dir() / "models" / "llama-small";
  const kq::SamplingParams params{.temperature = 0.9f, .seed = 11};
  const std::string want = reference_text(m, 400, params);
  const auto r = run_kq({"generate", "-m", m.string(), "--prompt", kPrompt, "-n", "400", "--no-echo",
                         "--no-special-prefix", "--ignore-eos", "--temperature", "0.9", "--seed", "11", "--threads",
                         "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "generated 400 tokens, ")) << r.err;
  EXPECT_EQ(r.out, want);
}

// A context of 2^31 - 1 positions, -n 2^30 (a 4 TiB cache if reserved), and the end-of-sequence token first:
// the run finishes at once; no rate for the 0 tokens generated.
TEST(CliGenerateCacheGrowth, HugeNDoesNotReserveTheCache) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const fs::path llama = kq::testing::shared_dir() / "models" / "llama-small";
  std::vector<int32_t> first;
  (void)reference_text(llama, 1, kq::SamplingParams{}, &first);
  kq::testing::TempDir tmp;
  const fs::path m = tmp.path / "l";
  fs::create_directories(m);
  for (const auto& e : fs::directory_iterator(llama))
    if (e.path().filename() != "config.json" && e.path().filename() != "generation_config.json")
      fs::create_symlink(e.path(), m / e.path().filename());
  nlohmann::json j = nlohmann::json::parse(read_all(llama / "config.json"));
  j["max_position_embeddings"] = 2147483647;
  std::ofstream(m / "config.json") << j.dump(2);
  j = nlohmann::json::parse(read_all(llama / "generation_config.json"));
  j["eos_token_id"] = first.at(0);
  std::ofstream(m / "generation_config.json") << j.dump(2);
  const auto r = run_kq({"generate", "-m", m.string(), "--prompt", kPrompt, "-n", "1073741824", "--no-echo",
                         "--no-special-prefix", "--threads", "1"},
                        120);
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "generated 0 tokens; stopped at end-of-sequence token " + std::to_string(first[0])))
      << r.err;
  EXPECT_FALSE(has(r.err, "0.0 tokens/s")) << r.err;
  EXPECT_FALSE(has(r.err, "KV cache")) << r.err;
}
