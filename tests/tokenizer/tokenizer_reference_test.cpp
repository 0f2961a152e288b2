// Known token ids: tokenizer_cases.json (test models' tokenizer), the original
// GPT-2 tokenizer, the reference ids of ref_logits.json, and the token count of
// WikiText-2 test implied by the reference scored-token counts.
#include <gtest/gtest.h>

#include <fstream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/tokenizer.hpp"

using kq::Tokenizer;
using kq::testing::shared_dir;
using Ids = std::vector<int32_t>;

namespace {

std::string read_file(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

/// Tokenizer of gpt2-tiny through tokenizer.json only (the folder prefers vocab.json).
Tokenizer load_tokenizer_json_route(const kq::testing::TempDir& tmp) {
  std::filesystem::copy_file(shared_dir() / "models/gpt2-tiny/tokenizer.json", tmp.path / "tokenizer.json");
  std::filesystem::copy_file(shared_dir() / "models/gpt2-tiny/tokenizer_config.json",
                             tmp.path / "tokenizer_config.json");
  return Tokenizer::load(tmp.path);
}

/// Scored tokens of the perplexity protocol (docs/EVALUATION.md): windows of
/// ctx tokens, each scoring len-1, windows of < 2 tokens dropped.
int64_t scored_tokens(int64_t total, int64_t ctx) {
  int64_t scored = 0;
  for (int64_t start = 0; start < total; start += ctx) {
    const int64_t len = std::min(ctx, total - start);
    if (len >= 2) scored += len - 1;
  }
  return scored;
}

}  // namespace

TEST(TokenizerReference, CasesJsonBothRoutes) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  KQ_REQUIRE_SHARED("data/tokenizer_cases.json");
  const Tokenizer a = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  kq::testing::TempDir tmp;
  const Tokenizer b = load_tokenizer_json_route(tmp);
  const Tokenizer c = Tokenizer::from_files(shared_dir() / "models/gpt2-tiny/vocab.json",
                                            shared_dir() / "models/gpt2-tiny/merges.txt");
  EXPECT_EQ(a.vocab_size(), 8192);
  EXPECT_EQ(b.vocab_size(), 8192);
  EXPECT_EQ(a.num_merges(), b.num_merges());
  const auto cases = nlohmann::json::parse(read_file(shared_dir() / "data/tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 5u);
  for (const auto& tc : cases) {
    const auto text = tc.at("text").get<std::string>();
    const auto want = tc.at("ids").get<Ids>();
    EXPECT_EQ(a.encode(text), want) << "vocab.json route: " << text;
    EXPECT_EQ(b.encode(text), want) << "tokenizer.json route: " << text;
    EXPECT_EQ(c.encode(text), want) << "from_files: " << text;
    EXPECT_EQ(a.encode(text, {.allow_special = true}), want) << text;
    EXPECT_EQ(a.decode(want), text);
    EXPECT_EQ(b.decode(want), text);
  }
}

TEST(TokenizerReference, SpecialTokensOfTestModels) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const Tokenizer a = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  kq::testing::TempDir tmp;
  const Tokenizer b = load_tokenizer_json_route(tmp);
  for (const Tokenizer* t : {&a, &b}) {
    EXPECT_EQ(t->eos_token_id(), 0);
    EXPECT_EQ(t->bos_token_id(), 0);
    EXPECT_EQ(t->token_to_id("<|endoftext|>"), 0);
    EXPECT_TRUE(t->is_special(0));
    EXPECT_FALSE(t->is_special(1));
    EXPECT_EQ(t->decode_token(0), "<|endoftext|>");
    // Raw text by default: the literal string is ordinary characters.
    const Ids raw = t->encode("a<|endoftext|>b");
    EXPECT_EQ(std::count(raw.begin(), raw.end(), 0), 0);
    EXPECT_EQ(t->decode(raw), "a<|endoftext|>b");
    // allow_special: recognized as the single token id 0.
    Ids want = t->encode("a");
    want.push_back(0);
    want.push_back(0);
    for (int32_t id : t->encode(" b")) want.push_back(id);
    EXPECT_EQ(t->encode("a<|endoftext|><|endoftext|> b", {.allow_special = true}), want);
    EXPECT_EQ(t->encode("<|endoftext|>", {.allow_special = true}), Ids{0});
    EXPECT_EQ(t->encode("<|endoftext|", {.allow_special = true}), t->encode("<|endoftext|"));
  }
}

TEST(TokenizerReference, OriginalGpt2) {
  KQ_REQUIRE_SHARED("data/tokenizers/gpt2");
  const auto dir = shared_dir() / "data/tokenizers/gpt2";
  const Tokenizer t = Tokenizer::from_files(dir / "vocab.json", dir / "merges.txt");
  const Tokenizer l = Tokenizer::load(dir);
  EXPECT_EQ(t.vocab_size(), 50257);
  // GPT-2's merges.txt has no newline after its last merge ('Ġg azed'), which Hugging Face's slow tokenizer (as
  // OpenAI's encoder.py) drops, reading the file as split("\n")[1:-1]: 49999 merges, and " gazed" is 'Ġg' 'azed'.
  EXPECT_EQ(t.num_merges(), 49999u);
  EXPECT_EQ(t.encode(" gazed"), (Ids{308, 13865}));
  EXPECT_EQ(t.encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(t.encode(" Hello"), Ids{18435});
  EXPECT_EQ(l.encode("Hello world"), (Ids{15496, 995}));
  EXPECT_EQ(t.eos_token_id(), 50256);
  EXPECT_EQ(t.encode("<|endoftext|>", {.allow_special = true}), Ids{50256});
  EXPECT_EQ(t.decode(Ids{15496, 995}), "Hello world");
}

TEST(TokenizerReference, RefLogitsIdsAreWikitextPrefix) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny/ref_logits.json");
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  const Tokenizer t = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  const auto ref = nlohmann::json::parse(read_file(shared_dir() / "models/gpt2-tiny/ref_logits.json"));
  const auto want = ref.at("input_ids").get<Ids>();
  ASSERT_EQ(want.size(), 32u);
  const std::string text = read_file(shared_dir() / "data/text/wikitext-2-test.txt");
  // The prefix of the whole-file tokenization (not of a text prefix, whose last word could split differently).
  const Ids ids = t.encode(text);
  ASSERT_GE(ids.size(), 32u);
  EXPECT_EQ(Ids(ids.begin(), ids.begin() + 32), want);
}

TEST(TokenizerReference, WikitextTokenCountMatchesScoredTokens) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  const std::string text = read_file(shared_dir() / "data/text/wikitext-2-test.txt");
  const Tokenizer a = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  kq::testing::TempDir tmp;
  const Tokenizer b = load_tokenizer_json_route(tmp);
  const Ids ids = a.encode(text);
  // models/README.md: 385125 scored tokens at ctx 256, 385880 at ctx 512.
  // Solving both for the token count T gives T = 386636 (the only solution).
  EXPECT_EQ(scored_tokens(int64_t(ids.size()), 256), 385125);
  EXPECT_EQ(scored_tokens(int64_t(ids.size()), 512), 385880);
  EXPECT_EQ(ids.size(), 386636u);
  EXPECT_EQ(b.encode(text), ids);  // both file routes agree on the whole file
  EXPECT_EQ(a.decode(ids), text);
  // Shakespeare test split: 42419 scored tokens at ctx 256, 42502 at ctx 512.
  KQ_REQUIRE_SHARED("data/text/shakespeare-test.txt");
  const size_t n_shakespeare = a.encode(read_file(shared_dir() / "data/text/shakespeare-test.txt")).size();
  EXPECT_EQ(scored_tokens(int64_t(n_shakespeare), 256), 42419);
  EXPECT_EQ(scored_tokens(int64_t(n_shakespeare), 512), 42502);
  // The word cache does not change results: a fresh tokenizer (empty cache) agrees with a warm one.
  const Tokenizer fresh = Tokenizer::load(shared_dir() / "models/gpt2-tiny");
  EXPECT_EQ(fresh.encode(text.substr(0, 5000)), a.encode(text.substr(0, 5000)));
}
