// `kq generate` puts the special tokens the tokenizer adds before every text
// (Tokenizer::prompt_prefix(): Llama-2's "<s>", Llama-3's
// "<|begin_of_text|>") before the prompt, as transformers' tokenizer(prompt)
// does, and says so on its summary line; --no-special-prefix omits them; an
// empty prompt gets the BOS once. Checked on a copy of llama-small whose
// tokenizer.json's post_processor puts "<|endoftext|>" (id 0) before the text.
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"
#include "common/test_data.hpp"

using kq::testing::has;
using kq::testing::read_all;
using kq::testing::run_kq;
using kq::testing::TempDir;
using kq::testing::write_text;

namespace {

namespace fs = std::filesystem;

/// A copy of llama-small in `dir` whose tokenizer.json's post_processor
/// (TemplateProcessing, as Llama-3's) adds "<|endoftext|>" before every text;
/// empty when the shared model is absent.
fs::path llama_with_bos(const fs::path& dir) {
  const fs::path llama = kq::testing::shared_dir() / "models" / "llama-small";
  if (!fs::exists(llama / "config.json")) return {};
  fs::copy(llama, dir, fs::copy_options::recursive);
  nlohmann::json j = nlohmann::json::parse(read_all(dir / "tokenizer.json"));
  j["post_processor"] = nlohmann::json::parse(R"({"type": "TemplateProcessing",
      "single": [{"SpecialToken": {"id": "<|endoftext|>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
      "pair": [], "special_tokens": {"<|endoftext|>": {"id": "<|endoftext|>", "ids": [0],
                                                         "tokens": ["<|endoftext|>"]}}})");
  write_text(dir / "tokenizer.json", j.dump());
  return dir;
}

}  // namespace

TEST(GenerateSpecialPrefix, PromptGetsTheTokenizersPrefix) {
  TempDir tmp;
  const fs::path m = llama_with_bos(tmp.path / "m");
  if (m.empty()) GTEST_SKIP() << "no shared llama-small";
  const std::vector<std::string> args{"generate", "-m", m.string(), "--prompt", "Once upon a time", "-n", "3",
                                      "--threads", "1"};
  const kq::testing::CliResult with = run_kq(args);
  ASSERT_EQ(with.status, 0) << with.err;
  // "Once upon a time" is 4 tokens of llama-small's tokenizer; the BOS makes 5.
  EXPECT_TRUE(has(with.err, "kq: prompt 5 tokens (with the tokenizer's special token 0 \"<|endoftext|>\" before the "
                            "text, as Hugging Face adds it; --no-special-prefix omits it), prefill "))
      << with.err;
  // Tester round 18, finding 6: generate does what Hugging Face does, and its summary line says so; the 4-line
  // post_processor warning of every run is gone (eval, which does not add it, keeps one line).
  EXPECT_FALSE(has(with.err, "kq: warning:")) << with.err;
  std::string text;
  for (int i = 0; i < 40; ++i) text += "Once upon a time there was a small model that read a short text. ";
  write_text(tmp.path / "t.txt", text);
  const kq::testing::CliResult eval =
      run_kq({"eval", "-m", m.string(), "-t", (tmp.path / "t.txt").string(), "--samples", "1", "--threads", "1"});
  EXPECT_EQ(eval.status, 0) << eval.err;
  EXPECT_EQ(kq::testing::count(eval.err, "kq: warning:"), 1u) << eval.err;
  EXPECT_TRUE(has(eval.err, "adds special tokens to every encoded text ('<|endoftext|>' before it), as Hugging Face "
                            "tokenizers apply it; kq adds none: `kq eval` and `kq bench` score the text's ids alone\n"))
      << eval.err;

  std::vector<std::string> off = args;
  off.push_back("--no-special-prefix");
  const kq::testing::CliResult without = run_kq(off);
  ASSERT_EQ(without.status, 0) << without.err;
  EXPECT_TRUE(has(without.err, "kq: prompt 4 tokens, prefill ")) << without.err;
  EXPECT_EQ(without.out.rfind("Once upon a time", 0), 0u) << without.out;  // the echo is the text alone either way
  EXPECT_EQ(with.out.rfind("Once upon a time", 0), 0u) << with.out;
}

// An empty prompt is the prefix alone: one BOS, not the prefix's and the empty prompt's.
TEST(GenerateSpecialPrefix, EmptyPromptGetsOneBos) {
  TempDir tmp;
  const fs::path m = llama_with_bos(tmp.path / "m");
  if (m.empty()) GTEST_SKIP() << "no shared llama-small";
  for (const bool off : {false, true}) {
    std::vector<std::string> args{"generate", "-m", m.string(), "--prompt", "", "-n", "2", "--threads", "1"};
    if (off) args.push_back("--no-special-prefix");
    const kq::testing::CliResult r = run_kq(args);
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has(r.err, off ? "kq: prompt 1 token (empty --prompt: the BOS token 0 \"<|endoftext|>\"), prefill "
                               : "kq: prompt 1 token (with the tokenizer's special token 0 \"<|endoftext|>\" before "
                                 "the empty --prompt, as Hugging Face adds it; --no-special-prefix omits it), "
                                 "prefill "))
        << r.err;
  }
}

// The shipped GPT-2 and llama-small tokenizers add nothing: the summary is as before.
TEST(GenerateSpecialPrefix, Gpt2TokenizerAddsNothing) {
  for (const char* name : {"gpt2-tiny", "llama-small"}) {
    const fs::path dir = kq::testing::shared_dir() / "models" / name;
    if (!fs::exists(dir / "config.json")) continue;
    const kq::testing::CliResult r =
        run_kq({"generate", "-m", dir.string(), "--prompt", "Once upon a time", "-n", "2", "--threads", "1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has(r.err, "kq: prompt 4 tokens, prefill ")) << r.err;
    EXPECT_FALSE(has(r.err, "special")) << r.err;
  }
}

// Fresh-user finding: "--prompt has 513 tokens; ... at most 512" did not say
// that 1 of them was the BOS kq added, which --no-special-prefix omits.
TEST(GenerateSpecialPrefix, PromptTooLongByThePrefixSaysSo) {
  TempDir tmp;
  const fs::path m = llama_with_bos(tmp.path / "m");
  if (m.empty()) GTEST_SKIP() << "no shared llama-small";
  auto words = [](int n) {
    std::string s = "a";
    for (int i = 1; i < n; ++i) s += " a";
    return s;  // n tokens of llama-small's tokenizer
  };
  const auto r = run_kq({"generate", "-m", m.string(), "--prompt", words(512), "-n", "1", "--threads", "1"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "--prompt has 513 tokens (1 of them the tokenizer's special prefix added before the text; "
                         "--no-special-prefix omits it, and the text's own tokens fit); the model's context is 512 "
                         "positions"))
      << r.err;
  const auto ok = run_kq({"generate", "-m", m.string(), "--prompt", words(512), "-n", "1", "--threads", "1",
                          "--no-special-prefix"});
  EXPECT_EQ(ok.status, 0) << ok.err;
  const auto far = run_kq({"generate", "-m", m.string(), "--prompt", words(600), "-n", "1", "--threads", "1"});
  EXPECT_EQ(far.status, 1) << far.err;
  EXPECT_TRUE(has(far.err, "--prompt has 601 tokens (1 of them the tokenizer's special prefix added before the "
                           "text; the text's own tokens do not fit either)"))
      << far.err;
}

// Tester round 18, finding 10: the echo was --prompt as given, not the text
// the model saw. With an NFKC normalizer "\ufb01sh \u2460" is "fish 1" to the
// model, and that is what is echoed (its tokens decoded); the special prefix
// is not echoed.
TEST(GenerateSpecialPrefix, EchoIsThePromptAsTheModelSeesIt) {
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  fs::copy(kq::testing::demo_model(), m, fs::copy_options::recursive);
  nlohmann::json j = nlohmann::json::parse(read_all(m / "tokenizer.json"));
  j["normalizer"] = {{"type", "NFKC"}};
  write_text(m / "tokenizer.json", j.dump());
  const kq::testing::CliResult r =
      run_kq({"generate", "-m", m.string(), "--prompt", "\ufb01sh \u2460", "-n", "0", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, "fish 1\n");
  TempDir tmp2;
  const fs::path b = llama_with_bos(tmp2.path / "m");
  if (b.empty()) GTEST_SKIP() << "no shared llama-small";
  const kq::testing::CliResult p = run_kq({"generate", "-m", b.string(), "--prompt", "Hello", "-n", "0"});
  ASSERT_EQ(p.status, 0) << p.err;
  EXPECT_EQ(p.out, "Hello\n");
}
