// tokenizer.json pre-tokenizers of Llama-3 / Qwen2 style (a Split regex,
// then ByteLevel without regex) and BPE ignore_merges: the GPT-2 regex given
// that way tokenizes as the plain ByteLevel one, the Llama-3 regex splits as
// written, and unsupported layouts are named (falling back where they can).
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/tokenizer_test_util.hpp"

using kq::Tokenizer;
using kq::testing::shared_dir;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;
using Pieces = std::vector<std::string_view>;
namespace fs = std::filesystem;

using kq::testing::expect_error;
using kq::testing::load_collecting_warnings;
using kq::testing::write_file;

namespace {

/// Hugging Face tokenizers' ByteLevel regex (pre_tokenizers/byte_level.rs).
constexpr const char* kByteLevelRegex =
    R"re('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)re";
/// Meta-Llama-3's Split regex (its tokenizer.json).
constexpr const char* kLlama3Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|)re"
    R"re( ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)re";

std::string read_file(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

json split_pre_tokenizer(const json& pattern, const std::string& behavior = "Isolated", bool invert = false) {
  return json{{"type", "Split"}, {"pattern", pattern}, {"behavior", behavior}, {"invert", invert}};
}

json byte_level(bool use_regex) {
  return json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true}, {"use_regex", use_regex}};
}

/// Llama-3's pre_tokenizer layout with `split` first.
json sequence(const json& split) {
  return json{{"type", "Sequence"}, {"pretokenizers", json::array({split, byte_level(false)})}};
}

/// The vocabulary symbol string of raw bytes ("Ġthe" for " the").
std::string sym(std::string_view bytes) { return kq::tok::bytes_to_symbols(std::string(bytes)); }

/// A byte-level BPE tokenizer.json: the 256 byte symbols (id = byte value),
/// then `extra` (raw bytes) with ids 256, 257, ...; merges as raw byte pairs.
json mini_tokenizer_json(const json& pre_tokenizer, const std::vector<std::string>& extra,
                         const std::vector<std::pair<std::string, std::string>>& merges, bool ignore_merges) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[sym(std::string(1, char(b)))] = b;
  for (size_t i = 0; i < extra.size(); ++i) vocab[sym(extra[i])] = 256 + int(i);
  json m = json::array();
  for (const auto& [a, b] : merges) m.push_back(json::array({sym(a), sym(b)}));
  return json{{"version", "1.0"},
              {"added_tokens", json::array()},
              {"normalizer", nullptr},
              {"pre_tokenizer", pre_tokenizer},
              {"model", json{{"type", "BPE"}, {"vocab", vocab}, {"merges", m}, {"ignore_merges", ignore_merges}}},
              {"decoder", byte_level(true)}};
}

Tokenizer load_json(const fs::path& dir, const json& tj) {
  write_file(dir / "tokenizer.json", tj.dump());
  return Tokenizer::load(dir);
}

bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

}  // namespace

// The GPT-2 regex given as a Split in Llama-3's layout is the same tokenizer
// as the ByteLevel pre_tokenizer with use_regex: same ids on every reference
// case and on 200 KB of WikiText-2.
TEST(TokenizerSplit, Gpt2RegexAsSplitEqualsByteLevel) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny/tokenizer.json");
  KQ_REQUIRE_SHARED("data/tokenizer_cases.json");
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  const fs::path orig_dir = shared_dir() / "models/gpt2-tiny";
  kq::testing::TempDir a_dir, b_dir;
  json tj = json::parse(read_file(orig_dir / "tokenizer.json"));
  write_file(a_dir.path / "tokenizer.json", tj.dump());
  tj["pre_tokenizer"] = sequence(split_pre_tokenizer(json{{"Regex", kByteLevelRegex}}));
  write_file(b_dir.path / "tokenizer.json", tj.dump());
  const Tokenizer a = Tokenizer::load(a_dir.path), b = Tokenizer::load(b_dir.path);
  ASSERT_EQ(b.source(), "tokenizer.json");  // used, not refused
  const auto cases = json::parse(read_file(shared_dir() / "data/tokenizer_cases.json"));
  ASSERT_GE(cases.size(), 5u);
  for (const auto& tc : cases) {
    const auto text = tc.at("text").get<std::string>();
    EXPECT_EQ(b.encode(text), tc.at("ids").get<Ids>()) << text;
    EXPECT_EQ(b.encode(text), a.encode(text)) << text;
  }
  const std::string wiki = read_file(shared_dir() / "data/text/wikitext-2-test.txt").substr(0, 200 * 1024);
  ASSERT_EQ(wiki.size(), 200u * 1024);
  const Ids ids = a.encode(wiki);
  EXPECT_GT(ids.size(), 40000u);
  EXPECT_EQ(b.encode(wiki), ids);
  EXPECT_EQ(b.decode(ids), wiki);
}

// Llama-3's regex on hand-checked text. The synthetic vocabulary holds every
// expected multi-byte pre-token and ignore_merges is on (as in Llama-3), so
// each pre-token becomes one id: the ids show the boundaries.
TEST(TokenizerSplit, Llama3RegexSplitsAsWritten) {
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {"12345", {"123", "45"}},  // digits grouped 1-3, left to right
      {"1234567 x", {"123", "456", "7", " x"}},
      {"abc123def", {"abc", "123", "def"}},
      {"I'M here", {"I", "'M", " here"}},  // contractions ignore case
      {"we'LL DON'T it's", {"we", "'LL", " DON", "'T", " it", "'s"}},
      {"a\n\n b", {"a", "\n\n", " b"}},
      {"a  \n\n  b", {"a", "  \n\n", " ", " b"}},  // \s*[\r\n]+ takes the spaces before the newlines
      {"x\r\ny", {"x", "\r\n", "y"}},
      {"naïve café", {"naïve", " café"}},  // \p{L} beyond ASCII
      {"Ελλάδα!", {"Ελλάδα", "!"}},
      {"(naïve)\tword", {"(naïve", ")", "\tword"}},  // one non-letter, non-newline character leads a word
      {"Hi!!! ...\n\nOk", {"Hi", "!!!", " ...\n\n", "Ok"}},  // punctuation keeps the newlines after it
      {"x+=1;", {"x", "+=", "1", ";"}},
      {"a   b", {"a", "  ", " b"}},
      {"end  ", {"end", "  "}},
  };
  std::vector<std::string> extra;
  for (const auto& [text, pieces] : cases)
    for (const std::string& p : pieces)
      if (p.size() > 1 && std::find(extra.begin(), extra.end(), p) == extra.end()) extra.push_back(p);
  extra.push_back("ab");  // one merge: a vocabulary with multi-byte tokens needs merges
  kq::testing::TempDir tmp;
  const Tokenizer t = load_json(
      tmp.path, mini_tokenizer_json(sequence(split_pre_tokenizer(json{{"Regex", kLlama3Regex}})), extra,
                                    {{"a", "b"}}, /*ignore_merges=*/true));
  const kq::tok::Pretokenizer pre(kLlama3Regex, "test");
  for (const auto& [text, pieces] : cases) {
    Ids want;
    for (const std::string& p : pieces) {
      const auto id = t.token_to_id(sym(p));
      ASSERT_TRUE(id.has_value()) << p;
      want.push_back(*id);
    }
    EXPECT_EQ(t.encode(text), want) << text;
    EXPECT_EQ(t.decode(want), text);
    Pieces got;
    pre.split(text, got);
    EXPECT_EQ(got, Pieces(pieces.begin(), pieces.end())) << text;
  }
}

// The regex and ignore_merges are per tokenizer, and so is the word cache:
// tokenizers over the same vocabulary and merges, used in turn, keep giving
// their own ids (the merges make the split visible).
TEST(TokenizerSplit, RegexAndWordCacheArePerTokenizer) {
  // "3 4" first: one piece "12345" -> 1 2 34 5 -> 12 34 5; Llama-3's "123" "45" -> 123, 45. No merge builds "345".
  const std::vector<std::string> extra = {"34", "12", "123", "45", "345"};  // ids 256..260
  const std::vector<std::pair<std::string, std::string>> merges = {{"3", "4"}, {"1", "2"}, {"12", "3"}, {"4", "5"}};
  const json llama_pre = sequence(split_pre_tokenizer(json{{"Regex", kLlama3Regex}}));
  kq::testing::TempDir gpt2_dir, llama_dir, llama_im_dir;
  const Tokenizer gpt2 = load_json(gpt2_dir.path, mini_tokenizer_json(byte_level(true), extra, merges, false));
  const Tokenizer llama = load_json(llama_dir.path, mini_tokenizer_json(llama_pre, extra, merges, false));
  const Tokenizer llama_im = load_json(llama_im_dir.path, mini_tokenizer_json(llama_pre, extra, merges, true));
  for (int round = 0; round < 2; ++round) {
    EXPECT_EQ(gpt2.encode("12345"), (Ids{257, 256, '5'}));
    EXPECT_EQ(llama.encode("12345"), (Ids{258, 259}));
    EXPECT_EQ(llama_im.encode("12345"), (Ids{258, 259}));
    EXPECT_EQ(gpt2.encode("345"), (Ids{256, '5'}));
    EXPECT_EQ(llama.encode("345"), (Ids{256, '5'}));
    EXPECT_EQ(llama_im.encode("345"), Ids{260});
    EXPECT_EQ(Tokenizer(llama).encode("345"), (Ids{256, '5'}));  // a copy shares the tables
  }
}

// A Split on a String matches it literally (regex characters included), as
// Hugging Face compiles the escaped string.
TEST(TokenizerSplit, StringPatternIsLiteral) {
  EXPECT_EQ(kq::tok::literal_pattern("a.b*(c)"), R"(a\.b\*\(c\))");
  EXPECT_EQ(kq::tok::literal_pattern("ü\\"), "ü\\\\");
  kq::testing::TempDir tmp;
  const Tokenizer t = load_json(
      tmp.path, mini_tokenizer_json(sequence(split_pre_tokenizer(json{{"String", "."}})), {"ab", "..", "b."},
                                    {{"a", "b"}, {".", "."}, {"b", "."}}, false));
  // Pieces "ab" "." "." "ab": the merges never join across a dot ("b." and ".." stay apart).
  EXPECT_EQ(t.encode("ab..ab"), (Ids{256, '.', '.', 256}));
  EXPECT_EQ(t.encode("abab"), (Ids{256, 256}));  // no dot: one piece (a regex "." would split every character)
}

// Empty matches split as Hugging Face does with Oniguruma (rust-onig's
// find_iter: the first empty match after a non-empty one is skipped; empty
// pieces are dropped): its own test cases, \d* on "a1bbb2" and \b on "test string".
TEST(TokenizerSplit, EmptyMatchesSplitAsHuggingFace) {
  Pieces got;
  kq::tok::Pretokenizer(R"(\d*)", "test").split("a1bbb2", got);
  EXPECT_EQ(got, (Pieces{"a", "1", "b", "b", "b", "2"}));
  got.clear();
  kq::tok::Pretokenizer(R"(\b)", "test").split("test string", got);
  EXPECT_EQ(got, (Pieces{"test", " ", "string"}));
  got.clear();
  kq::tok::Pretokenizer("", "test").split("añb", got);  // an empty pattern: one piece per character
  EXPECT_EQ(got, (Pieces{"a", "ñ", "b"}));
}

// ignore_merges: a pre-token that is a vocabulary token is that token even
// where the merges build something else; other pre-tokens are merged as usual;
// added tokens are not part of the model's vocabulary for it.
TEST(TokenizerSplit, IgnoreMergesUsesWholeVocabularyTokens) {
  const std::vector<std::string> extra = {"bc", "abc"};  // 256, 257: no merge builds "abc"
  for (const bool ignore : {false, true}) {
    kq::testing::TempDir tmp;
    json tj = mini_tokenizer_json(byte_level(true), extra, {{"b", "c"}}, ignore);
    tj["added_tokens"] = json::array({json{{"id", 258}, {"content", "zz"}, {"special", true}}});
    const Tokenizer t = load_json(tmp.path, tj);
    EXPECT_EQ(t.encode("abc"), ignore ? Ids{257} : (Ids{'a', 256})) << ignore;
    EXPECT_EQ(t.encode("abcd"), (Ids{'a', 256, 'd'})) << ignore;  // not a vocabulary token: merges
    EXPECT_EQ(t.encode("bc abc"), (Ids{256, ' ', 'a', 256})) << ignore;  // " abc" is not in the vocabulary
    EXPECT_EQ(t.encode("zz"), (Ids{'z', 'z'})) << ignore;
    EXPECT_EQ(t.encode("zz", {.allow_special = true}), Ids{258}) << ignore;
  }
  // A non-boolean value is malformed.
  kq::testing::TempDir tmp;
  json tj = mini_tokenizer_json(byte_level(true), extra, {{"b", "c"}}, false);
  tj["model"]["ignore_merges"] = "yes";
  write_file(tmp.path / "tokenizer.json", tj.dump());
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {"tokenizer.json", "ignore_merges"});
}

// A regex PCRE2 rejects is a FormatError naming the file, the pattern and
// PCRE2's message and offset, also when vocab.json + merges.txt could be used.
TEST(TokenizerSplit, InvalidRegexIsAFormatErrorNamingTheFile) {
  kq::testing::TempDir tmp;
  const json tj = mini_tokenizer_json(sequence(split_pre_tokenizer(json{{"Regex", "(?i:'s|\\p{L}+"}})), {}, {}, true);
  write_file(tmp.path / "tokenizer.json", tj.dump());
  const std::string file = (tmp.path / "tokenizer.json").string();
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); },
                                {file, "(?i:'s|\\p{L}+", "offset 13", "missing closing parenthesis"});
  write_file(tmp.path / "vocab.json", tj["model"]["vocab"].dump());
  write_file(tmp.path / "merges.txt", "#version: 0.2\n");
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {file, "missing closing parenthesis"});
}

// A Split regex that backtracks catastrophically exceeds PCRE2's match limit:
// the error names the file, the pattern and the byte where the failing match
// attempt started (12: the a's; the search that failed started at 0).
TEST(TokenizerSplit, MatchLimitNamesTheFilePatternAndAttemptStart) {
  kq::testing::TempDir tmp;
  const Tokenizer tok = load_json(tmp.path, mini_tokenizer_json(sequence(split_pre_tokenizer(json{{"Regex", "(a+)+$"}})),
                                                                 {}, {}, true));
  const std::string file = (tmp.path / "tokenizer.json").string();
  expect_error<kq::Error>([&] { tok.encode("hello world " + std::string(50, 'a') + "b"); },
                          {file, "regex '(a+)+$'", "at byte 12:", "match limit exceeded"});
}

// Layouts kq does not run are Unsupported naming the file and the piece; with
// vocab.json + merges.txt beside it, the fallback warning says the same.
TEST(TokenizerSplit, UnsupportedLayoutsAreNamedAndFallBack) {
  const json split = split_pre_tokenizer(json{{"Regex", kLlama3Regex}});
  json removed = split, inverted = split, no_pattern = split;
  removed["behavior"] = "Removed";
  inverted["invert"] = true;
  const json digits = json{{"type", "Digits"}, {"individual_digits", true}};
  const std::vector<std::pair<json, std::vector<std::string>>> cases = {
      {sequence(removed), {"Split pre_tokenizer behavior \"Removed\" is not supported"}},
      {sequence(inverted), {"Split pre_tokenizer with invert=true is not supported"}},
      {json{{"type", "Sequence"}, {"pretokenizers", json::array({split, digits, byte_level(false)})}},
       {"Sequence [Split, Digits, ByteLevel] is not supported"}},
      {json{{"type", "Sequence"}, {"pretokenizers", json::array({digits, byte_level(false)})}},
       {"Sequence [Digits, ByteLevel] is not supported"}},
      {json{{"type", "Sequence"}, {"pretokenizers", json::array({byte_level(false), split})}},
       {"Sequence [ByteLevel, Split] is not supported: it must end with ByteLevel"}},
      {json{{"type", "Sequence"}, {"pretokenizers", json::array({split, byte_level(true)})}},
       {"ByteLevel use_regex=true after a Split is not supported"}},
      {split, {"found {\"behavior\":\"Isolated\""}},  // a Split alone: not byte-level
  };
  for (const auto& [pre, needles] : cases) {
    kq::testing::TempDir tmp;
    const json tj = mini_tokenizer_json(pre, {"ab"}, {{"a", "b"}}, false);
    write_file(tmp.path / "tokenizer.json", tj.dump());
    const std::string file = (tmp.path / "tokenizer.json").string();
    std::vector<std::string> want = needles;
    want.push_back(file);
    expect_error<kq::Unsupported>([&] { Tokenizer::load(tmp.path); }, want);
    write_file(tmp.path / "vocab.json", tj["model"]["vocab"].dump());
    write_file(tmp.path / "merges.txt", "#version: 0.2\n" + sym("a") + " " + sym("b") + "\n");
    std::vector<std::string> warnings;
    const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
    EXPECT_TRUE(contains(t.source(), "vocab.json + merges.txt (tokenizer.json not used: " + file)) << t.source();
    ASSERT_EQ(warnings.size(), 1u) << pre.dump();
    EXPECT_TRUE(contains(warnings[0], file + ": ")) << warnings[0];
    EXPECT_TRUE(contains(warnings[0], needles[0])) << warnings[0];
    EXPECT_TRUE(contains(warnings[0], "tokenizer.json is not used")) << warnings[0];
  }
  // A Split without a usable pattern is malformed.
  kq::testing::TempDir tmp;
  no_pattern["pattern"] = json{{"Glob", "*"}};
  write_file(tmp.path / "tokenizer.json", mini_tokenizer_json(sequence(no_pattern), {}, {}, false).dump());
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {"tokenizer.json", "Glob"});
}
