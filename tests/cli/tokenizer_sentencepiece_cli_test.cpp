// kq eval and kq generate on a Llama model folder whose tokenizer.json is a
// SentencePiece-style one (Llama-2 layout: Prepend/Replace normalizer, BPE
// from characters with byte fallback): it is used, not refused, and the
// commands run. The model is the shared llama-small (vocabulary 8192) copied
// to a temporary folder with a small synthetic tokenizer (ids < 300).
#include <gtest/gtest.h>

#include <fmt/core.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"
#include "kq/tokenizer.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr const char* kMeta = "\xE2\x96\x81";  // ▁

/// <unk> <s> </s>, the 256 "<0xNN>" tokens, "▁", a-z, and the merges
/// "▁ t", "h e", "▁t he", "l l", "o r" (legacy Llama-2 layout).
json llama2_style_tokenizer_json() {
  json vocab = json::object();
  vocab["<unk>"] = 0;
  vocab["<s>"] = 1;
  vocab["</s>"] = 2;
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = 3 + b;
  int id = 259;
  vocab[kMeta] = id++;
  for (char c = 'a'; c <= 'z'; ++c) vocab[std::string(1, c)] = id++;
  json merges = json::array();
  for (const auto& [a, b] : {std::pair{std::string(kMeta), "t"}, std::pair{std::string("h"), "e"},
                             std::pair{std::string(kMeta) + "t", "he"}, std::pair{std::string("l"), "l"},
                             std::pair{std::string("o"), "r"}}) {
    vocab[a + b] = id++;
    merges.push_back(a + " " + b);
  }
  json added = json::array();
  for (const auto& [i, content] : {std::pair{0, "<unk>"}, std::pair{1, "<s>"}, std::pair{2, "</s>"}})
    added.push_back(json{{"id", i}, {"content", content}, {"normalized", false}, {"special", true}});
  const json replace_space = {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}};
  return json{
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({json{{"type", "Prepend"}, {"prepend", kMeta}}, replace_space})}}},
      {"pre_tokenizer", nullptr},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({json{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                                  json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}},
                                  json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"},
        {"unk_token", "<unk>"},
        {"fuse_unk", true},
        {"byte_fallback", true},
        {"ignore_merges", false},
        {"vocab", vocab},
        {"merges", merges}}}};
}

TEST(CliTokenizerSentencePiece, EvalAndGenerateRunOnALlama2StyleTokenizer) {
  KQ_REQUIRE_SHARED("models/llama-small");
  TempDir tmp;
  const fs::path m = tmp.path / "llama-sp";
  fs::copy(shared_dir() / "models/llama-small", m, fs::copy_options::recursive);
  fs::permissions(m, fs::perms::owner_all, fs::perm_options::add);
  for (const auto& e : fs::directory_iterator(m))
    fs::permissions(e.path(), fs::perms::owner_write, fs::perm_options::add);
  write_text(m / "tokenizer.json", llama2_style_tokenizer_json().dump());
  write_text(m / "tokenizer_config.json", json{{"bos_token", "<s>"}, {"eos_token", "</s>"}}.dump());
  std::string text;
  for (int i = 0; i < 20; ++i)
    text += "the cat and the horse sat on the floor.\nCaf\xC3\xA9 \xF0\x9F\x98\x80 hello world\n";
  const fs::path text_file = write_text(tmp.path / "text.txt", text);
  const Tokenizer tok = Tokenizer::load(m);
  const std::vector<int32_t> ids = tok.encode(text);
  ASSERT_EQ(tok.decode(ids), text);

  const fs::path j = tmp.path / "eval.json";
  const CliResult e = run_kq({"eval", "-m", m.string(), "-t", text_file.string(), "--ctx", "64", "--samples", "2",
                              "--threads", "1", "--json", j.string()});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(has(e.out, "tokenizer:     tokenizer.json\n")) << e.out;
  EXPECT_FALSE(has(e.err, "not used")) << e.err;
  const json r = json::parse(read_all(j));
  EXPECT_EQ(r["text_tokens"].get<size_t>(), ids.size());
  EXPECT_EQ(r["scored_tokens"].get<int64_t>(), 2 * 63);

  const CliResult g = run_kq({"generate", "-m", m.string(), "--prompt", "the horse", "-n", "4", "--threads", "1"});
  ASSERT_EQ(g.status, 0) << g.err;
  EXPECT_TRUE(g.out.starts_with("the horse")) << g.out;
  EXPECT_FALSE(has(g.err, "not used")) << g.err;
  const CliResult s = run_kq({"generate", "-m", m.string(), "--prompt", "<s>the cat", "--special-tokens", "-n", "2",
                              "--threads", "1", "--ignore-eos"});
  ASSERT_EQ(s.status, 0) << s.err;
  // <s>, then "▁the▁cat": "▁ t", "h e", "▁t he" -> ▁the; no merge joins "▁", "c", "a", "t".
  EXPECT_TRUE(has(s.err, "kq: prompt 6 tokens,")) << s.err;
  // The echo is the prompt as the model sees it, its ids decoded: the legacy normalizer's "▁" before the text after
  // <s> is a space there (as Hugging Face decodes these ids).
  EXPECT_TRUE(s.out.starts_with("<s> the cat")) << s.out;
}

}  // namespace
}  // namespace kq::testing
