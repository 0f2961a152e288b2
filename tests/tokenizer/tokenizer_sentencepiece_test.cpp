// tokenizer.json files converted from SentencePiece BPE (Llama-2, TinyLlama,
// Mistral): "▁" for spaces and before the text, BPE from characters, byte
// fallback to "<0xNN>" tokens, unk; a decoder that turns them back and strips
// the leading space. Both layouts (a Prepend/Replace normalizer, the legacy
// one; a Metaspace pre_tokenizer, the newer one) on a synthetic vocabulary
// whose expected ids are worked out by hand.
#include <gtest/gtest.h>

#include <random>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "tokenizer/metaspace.hpp"
#include "tokenizer/tokenizer_test_util.hpp"

using kq::Tokenizer;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;
namespace fs = std::filesystem;

using kq::testing::expect_error;
using kq::testing::load_collecting_warnings;
using kq::testing::write_file;

namespace {

constexpr const char* kMeta = "\xE2\x96\x81";  // ▁

/// "▁" for every '_' of `s` (the test tables write "_a" for "▁a").
std::string m(std::string s) {
  std::string out;
  for (const char c : s) out += c == '_' ? std::string(kMeta) : std::string(1, c);
  return out;
}

// Ids: 0 <unk>, 1 <s>, 2 </s>, 3 + b for <0xbb>, then these pieces from 259 on.
constexpr int32_t kUnk = 0, kBos = 1, kEos = 2;
constexpr int32_t byte_id(int b) { return 3 + b; }
const std::vector<std::string> kPieces = {
    "_", "a", "b", "c", "h", "e", "l", "o", "w", "r", "d", "t", "!", "\xC3\xBC" /* ü */,  // 259..272
    "bc", "ab", "_a", "he", "ll", "hell", "hello", "_hello", "_w", "or", "_wor", "__",     // 273..284
    "_abc",  // 285: no merge builds it (ignore_merges)
};
constexpr int32_t kMetaId = 259, kA = 260, kB = 261, kL = 265, kD = 269, kBc = 273, kAb = 274, kMetaA = 275,
                  kHello = 279, kMetaHello = 280, kMetaWor = 283, kMetaMeta = 284, kMetaAbc = 285;
// Merges in rank order: "b c" outranks "a b", which outranks "▁ a".
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"b", "c"}, {"a", "b"},  {"_", "a"},  {"h", "e"},   {"l", "l"},   {"he", "ll"},
    {"hell", "o"}, {"_", "hello"}, {"_", "w"}, {"o", "r"}, {"_w", "or"}, {"_", "_"},
};

enum class Layout { kLegacy, kMetaspace };

json strip_decoder(bool strip) {
  json d = json::array({json{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                        json{{"type", "ByteFallback"}}, json{{"type", "Fuse"}}});
  if (strip) d.push_back(json{{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
  return json{{"type", "Sequence"}, {"decoders", d}};
}

/// A Llama-2 style tokenizer.json over kPieces and kMerges: the legacy layout
/// (normalizer Sequence [Prepend, Replace], no pre_tokenizer) or the newer one
/// (no normalizer, Metaspace with `scheme`).
json sp_tokenizer_json(Layout layout, const std::string& scheme = "first") {
  json vocab = json::object();
  vocab["<unk>"] = kUnk;
  vocab["<s>"] = kBos;
  vocab["</s>"] = kEos;
  for (int b = 0; b < 256; ++b) vocab[kq::tok::byte_fallback_token(uint8_t(b))] = byte_id(b);
  for (size_t i = 0; i < kPieces.size(); ++i) vocab[m(kPieces[i])] = 259 + int(i);
  json merges = json::array();
  for (const auto& [a, b] : kMerges) merges.push_back(m(a) + " " + m(b));
  json added = json::array();
  for (const auto& [id, content] : {std::pair{kUnk, "<unk>"}, std::pair{kBos, "<s>"}, std::pair{kEos, "</s>"}})
    added.push_back(json{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                         {"rstrip", false}, {"normalized", false}, {"special", true}});
  json normalizer = nullptr, pre = nullptr;
  if (layout == Layout::kLegacy)
    normalizer = json{{"type", "Sequence"},
                      {"normalizers", json::array({json{{"type", "Prepend"}, {"prepend", kMeta}},
                                                   json{{"type", "Replace"},
                                                        {"pattern", {{"String", " "}}},
                                                        {"content", kMeta}}})}};
  else
    pre = json{{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", scheme}, {"split", false}};
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", added},
              {"normalizer", normalizer},
              {"pre_tokenizer", pre},
              {"post_processor", nullptr},
              {"decoder", strip_decoder(true)},
              {"model",
               json{{"type", "BPE"},
                    {"dropout", nullptr},
                    {"unk_token", "<unk>"},
                    {"continuing_subword_prefix", nullptr},
                    {"end_of_word_suffix", nullptr},
                    {"fuse_unk", true},
                    {"byte_fallback", true},
                    {"ignore_merges", false},
                    {"vocab", vocab},
                    {"merges", merges}}}};
}

Tokenizer load_json(const kq::testing::TempDir& dir, const json& tj) {
  write_file(dir.path / "tokenizer.json", tj.dump());
  return Tokenizer::load(dir.path);
}

}  // namespace

// Hand-worked ids, the same in both layouts (texts that do not start with a space).
TEST(TokenizerSentencePiece, EncodesByRankWithByteFallbackInBothLayouts) {
  const std::vector<std::pair<std::string, Ids>> cases = {
      // "▁hello▁world": he, ll, hell, hello, ▁hello, ▁w, or, ▁wor; "l" "d" stay.
      {"hello world", {kMetaHello, kMetaWor, kL, kD}},
      // "▁abc": "b c" (rank 0) before "▁ a" (rank 2), so "a b" (rank 1) never applies.
      {"abc", {kMetaA, kBc}},
      // "▁ab": "a b" (rank 1) before "▁ a" (rank 2) although "▁ a" is further left.
      {"ab", {kMetaId, kAb}},
      // Spaces are "▁": "▁a▁▁b" -> ▁a, ▁▁, b.
      {"a  b", {kMetaA, kMetaMeta, kB}},
      // Characters outside the vocabulary: their UTF-8 bytes.
      {"\xC3\xA9", {kMetaId, byte_id(0xC3), byte_id(0xA9)}},                                        // é
      {"\xF0\x9F\x98\x80", {kMetaId, byte_id(0xF0), byte_id(0x9F), byte_id(0x98), byte_id(0x80)}},  // 😀
      {"a\nb", {kMetaA, byte_id('\n'), kB}},
      {"\xC3\xBC!", {kMetaId, 272, 271}},  // ü is a vocabulary character: no byte fallback
      // Ill-formed UTF-8: each stray byte is a character without a token.
      {"a\xFF", {kMetaA, byte_id(0xFF)}},
      // Without special-token matching "<s>" is text: "<", "s", ">" have byte tokens only.
      {"<s>", {kMetaId, byte_id('<'), byte_id('s'), byte_id('>')}},
      {"", {}},
  };
  for (const Layout layout : {Layout::kLegacy, Layout::kMetaspace}) {
    kq::testing::TempDir tmp;
    const Tokenizer t = load_json(tmp, sp_tokenizer_json(layout));
    EXPECT_EQ(t.source(), "tokenizer.json");
    EXPECT_EQ(t.num_merges(), kMerges.size());
    for (const auto& [text, want] : cases) EXPECT_EQ(t.encode(text), want) << int(layout) << " " << text;
  }
}

// Where the layouts differ, as in Hugging Face: the Prepend normalizer puts
// "▁" before every non-empty section (also before one starting with a space,
// and after a special token); Metaspace "first" only before the section at the
// start of the text and not when it already starts with "▁" / " ".
TEST(TokenizerSentencePiece, PrependRuleOfEachLayout) {
  kq::testing::TempDir a, b, c, d;
  const Tokenizer legacy = load_json(a, sp_tokenizer_json(Layout::kLegacy));
  const Tokenizer first = load_json(b, sp_tokenizer_json(Layout::kMetaspace, "first"));
  const Tokenizer always = load_json(c, sp_tokenizer_json(Layout::kMetaspace, "always"));
  const Tokenizer never = load_json(d, sp_tokenizer_json(Layout::kMetaspace, "never"));
  // "▁▁hello": hello (rank 6), then "▁ hello" (rank 7) before "▁ ▁" (rank 11).
  EXPECT_EQ(legacy.encode(" hello"), (Ids{kMetaId, kMetaHello}));
  EXPECT_EQ(first.encode(" hello"), Ids{kMetaHello});
  EXPECT_EQ(always.encode(" hello"), Ids{kMetaHello});
  EXPECT_EQ(never.encode("hello"), Ids{kHello});
  const kq::EncodeOptions special{.allow_special = true};
  EXPECT_EQ(legacy.encode("hello</s>hello", special), (Ids{kMetaHello, kEos, kMetaHello}));
  EXPECT_EQ(first.encode("hello</s>hello", special), (Ids{kMetaHello, kEos, kHello}));
  EXPECT_EQ(always.encode("hello</s>hello", special), (Ids{kMetaHello, kEos, kMetaHello}));
  EXPECT_EQ(legacy.encode("<s>hello", special), (Ids{kBos, kMetaHello}));
  EXPECT_EQ(first.encode("<s>hello", special), (Ids{kBos, kHello}));  // not at the start of the text
  EXPECT_EQ(first.encode("<s></s>", special), (Ids{kBos, kEos}));     // nothing between: no "▁"
  EXPECT_EQ(first.encode("hello</s> hello", special), (Ids{kMetaHello, kEos, kMetaHello}));  // the space is "▁"
}

// Phi-3's tokenizer.json (model_type "phi3": Phi-3 / Phi-3.5) is the legacy Llama-2 layout with chat tokens added
// after the vocabulary: <|endoftext|>, and <|assistant|>, <|end|>, <|user|>, ... with "rstrip": true. It loads as
// is; the chat tokens are matched as special tokens, and their rstrip (Hugging Face strips the spaces after them,
// e.g. the "\n" of "<|user|>\n") is warned as ignored, so kq keeps that text.
TEST(TokenizerSentencePiece, Phi3LayoutWithRstripChatTokensLoads) {
  json tj = sp_tokenizer_json(Layout::kLegacy);
  constexpr int32_t kEot = 286, kAssistant = 287, kEnd = 288, kUser = 289;
  for (const auto& [id, content, rstrip] : {std::tuple{kEot, "<|endoftext|>", false},
                                            std::tuple{kAssistant, "<|assistant|>", true},
                                            std::tuple{kEnd, "<|end|>", true}, std::tuple{kUser, "<|user|>", true}}) {
    tj["model"]["vocab"][content] = id;
    tj["added_tokens"].push_back(json{{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false},
                                      {"rstrip", rstrip}, {"normalized", false}, {"special", true}});
  }
  kq::testing::TempDir tmp;
  write_file(tmp.path / "tokenizer.json", tj.dump());
  std::vector<std::string> warnings;
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  EXPECT_EQ(t.vocab_size(), 290);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("added token settings are ignored: '<|assistant|>' (rstrip), '<|end|>' (rstrip), "
                             "'<|user|>' (rstrip)."),
            std::string::npos)
      << warnings[0];
  const kq::EncodeOptions special{.allow_special = true};
  EXPECT_EQ(t.encode("<|user|>hello<|end|><|assistant|>", special), (Ids{kUser, kMetaHello, kEnd, kAssistant}));
  EXPECT_EQ(t.encode("<|user|>\nhello", special), (Ids{kUser, kMetaId, byte_id('\n'), kHello}));  // "\n" kept
  EXPECT_TRUE(t.is_special(kEot));
  EXPECT_EQ(t.decode(Ids{kUser, kMetaHello, kEnd}), "<|user|> hello<|end|>");
  EXPECT_EQ(t.encode("<|end|>").size(), 8u);  // without special tokens: "▁" and the bytes of the text
}

// A nested normalizer Sequence is read as its members in place, an empty one
// as no normalizer (Hugging Face's identity), as in the byte-level layout: the
// legacy Sequence [Prepend, Sequence [Replace]] is the legacy layout, a
// Metaspace with an empty Sequence the Metaspace one (both were Unsupported).
TEST(TokenizerSentencePiece, NestedAndEmptyNormalizerSequences) {
  kq::testing::TempDir a, b;
  json legacy = sp_tokenizer_json(Layout::kLegacy);
  json& parts = legacy["normalizer"]["normalizers"];
  parts[1] = json{{"type", "Sequence"}, {"normalizers", json::array({parts[1]})}};
  EXPECT_EQ(load_json(a, legacy).encode(" hello"), (Ids{kMetaId, kMetaHello}));
  json meta = sp_tokenizer_json(Layout::kMetaspace);
  meta["normalizer"] = json{{"type", "Sequence"}, {"normalizers", json::array()}};
  EXPECT_EQ(load_json(b, meta).encode(" hello"), Ids{kMetaHello});
}

// decode: "▁" is a space, "<0xNN>" its byte, one leading space is stripped;
// decode(encode(x)) == x for text (the legacy layout also for text that
// starts with a space; Metaspace drops that space, as Hugging Face does).
TEST(TokenizerSentencePiece, DecodeRoundTrips) {
  const std::vector<std::string> texts = {
      "hello world", "abc", "a  b  ", "tab\tnew\nline\r\n", "na\xC3\xAFve caf\xC3\xA9 \xF0\x9F\x98\x80 \xE6\x97\xA5",
      "\xC3\xBC!", "<s>x</s>", "a\xFF\xFE b\x80", "hello\n\n  wor ld!"};
  for (const Layout layout : {Layout::kLegacy, Layout::kMetaspace}) {
    kq::testing::TempDir tmp;
    const Tokenizer t = load_json(tmp, sp_tokenizer_json(layout));
    for (const std::string& x : texts) EXPECT_EQ(t.decode(t.encode(x)), x) << int(layout) << " " << x;
    EXPECT_EQ(t.decode(t.encode(" hello")), layout == Layout::kLegacy ? " hello" : "hello");
    EXPECT_EQ(t.decode(Ids{kBos, kMetaHello, kEos}), "<s> hello</s>");  // no leading space to strip
    EXPECT_EQ(t.decode(Ids{byte_id(' '), kA}), "a");                     // a decoded byte space is stripped too
    EXPECT_EQ(t.decode_token(kMetaHello), " hello");                     // one token: nothing stripped
    EXPECT_EQ(t.decode_token(byte_id(0xC3)), "\xC3");
    EXPECT_EQ(t.id_to_token(kMetaHello), m("_hello"));
    EXPECT_EQ(t.token_to_id("<0xC3>").value_or(-1), byte_id(0xC3));
    const Ids ids = t.encode("hello</s>", {.allow_special = true});
    EXPECT_EQ(ids, (Ids{kMetaHello, kEos}));
    EXPECT_EQ(t.decode(ids), "hello</s>");
  }
  // A decoder without the Strip keeps the space, without a warning (fresh-user
  // round 14b read the README as warning about it); one kq does not know is a warning.
  kq::testing::TempDir tmp;
  json tj = sp_tokenizer_json(Layout::kLegacy);
  tj["decoder"] = strip_decoder(false);
  {
    write_file(tmp.path / "tokenizer.json", tj.dump());
    std::vector<std::string> none;
    const Tokenizer t = load_collecting_warnings(tmp.path, none);
    EXPECT_EQ(t.decode(Ids{kMetaHello}), " hello");
    EXPECT_EQ(t.decode(t.encode(" hello")), "  hello");  // the prepended "▁" and the text's space
    EXPECT_TRUE(none.empty()) << none.at(0);
  }
  tj["decoder"] = json{{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", false}};
  EXPECT_EQ(load_json(tmp, tj).decode(Ids{kMetaHello}), "hello");
  tj["decoder"] = json{{"type", "ByteLevel"}};
  write_file(tmp.path / "tokenizer.json", tj.dump());
  std::vector<std::string> warnings;
  EXPECT_EQ(load_collecting_warnings(tmp.path, warnings).decode(Ids{kMetaHello}), "hello");
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find((tmp.path / "tokenizer.json").string() + ": the decoder {\"type\":\"ByteLevel\"} is "
                                                                      "ignored: kq decodes SentencePiece pieces"),
            std::string::npos)
      << warnings[0];
}

// decode(encode(x)) == x for random strings of vocabulary characters, spaces,
// newlines, characters outside the vocabulary and stray bytes (legacy layout:
// also with leading spaces; "▁" itself is left out, it decodes as a space).
TEST(TokenizerSentencePiece, RandomTextRoundTrips) {
  kq::testing::TempDir tmp;
  const Tokenizer t = load_json(tmp, sp_tokenizer_json(Layout::kLegacy));
  const std::vector<std::string> alphabet = {"a", "b", "c", "h", "e", "l", "o", "w", " ", " ", "\n", "\xC3\xA9",
                                             "\xC3\xBC", "\xF0\x9F\x98\x80", "\x80", "\xFF", "\xC3", "<s>"};
  std::mt19937 rng(1234);
  for (int n = 0; n < 500; ++n) {
    std::string x;
    for (size_t k = rng() % 40; k > 0; --k) x += alphabet[rng() % alphabet.size()];
    const Ids ids = t.encode(x);
    EXPECT_EQ(t.decode(ids), x);
    for (const int32_t id : ids) EXPECT_NE(id, kUnk) << x;  // every byte has a token: never unk
  }
}

// A character with neither a token nor all of its byte tokens is unk, fused
// with the unk before it (fuse_unk); as in Hugging Face's BPE::merge_word a
// pending unk comes out only before the next character that has a token, so
// byte tokens of characters between come first. Without unk_token such a
// character is dropped; without byte_fallback every unknown character is unk.
TEST(TokenizerSentencePiece, UnknownCharactersAndMissingByteTokens) {
  json tj = sp_tokenizer_json(Layout::kLegacy);
  for (int b = 0xE0; b <= 0xEF; ++b) tj["model"]["vocab"].erase(kq::tok::byte_fallback_token(uint8_t(b)));
  // a € € é b: € (E2 82 AC) is not a vocabulary character and has no byte token E2.
  const std::string text = "a\xE2\x82\xAC\xE2\x82\xAC\xC3\xA9" "b";
  const Ids e9 = {byte_id(0xC3), byte_id(0xA9)};
  struct Case {
    bool fuse, byte_fallback, unk;
    Ids want;
  };
  const std::vector<Case> cases = {
      {true, true, true, {kMetaA, e9[0], e9[1], kUnk, kB}},
      {false, true, true, {kMetaA, kUnk, e9[0], e9[1], kUnk, kB}},
      {true, true, false, {kMetaA, e9[0], e9[1], kB}},
      {true, false, true, {kMetaA, kUnk, kB}},
  };
  for (const Case& c : cases) {
    kq::testing::TempDir tmp;
    tj["model"]["fuse_unk"] = c.fuse;
    tj["model"]["byte_fallback"] = c.byte_fallback;
    tj["model"]["unk_token"] = c.unk ? json("<unk>") : json(nullptr);
    EXPECT_EQ(load_json(tmp, tj).encode(text), c.want) << c.fuse << c.byte_fallback << c.unk;
  }
  kq::testing::TempDir tmp;
  tj["model"]["unk_token"] = "<nope>";
  write_file(tmp.path / "tokenizer.json", tj.dump());
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {"tokenizer.json", "unk_token '<nope>'"});
}

// A character with neither a byte token nor an unk_token is dropped (as in
// Hugging Face) and was silently (fresh-user round 14b): byte_fallback with
// byte tokens missing and no unk_token is a warning naming the file; "normalized"
// true on a special token, with the normalizer this layout has, is warned as ignored.
TEST(TokenizerSentencePiece, MissingByteTokensWithoutUnkAreWarned) {
  json tj = sp_tokenizer_json(Layout::kLegacy);
  for (int b = 0xE0; b <= 0xEF; ++b) tj["model"]["vocab"].erase(kq::tok::byte_fallback_token(uint8_t(b)));
  const std::string text = "a\xE2\x82\xAC" "b";  // € has no token and no byte token E2
  for (const bool unk : {true, false}) {
    kq::testing::TempDir tmp;
    tj["model"]["unk_token"] = unk ? json("<unk>") : json(nullptr);
    write_file(tmp.path / "tokenizer.json", tj.dump());
    std::vector<std::string> warnings;
    // Without unk, a and b meet once € is dropped, and "a b" outranks "▁ a".
    EXPECT_EQ(load_collecting_warnings(tmp.path, warnings).encode(text),
              unk ? (Ids{kMetaA, kUnk, kB}) : (Ids{kMetaId, kAb}));
    if (unk) {
      EXPECT_TRUE(warnings.empty()) << warnings.at(0);
      continue;
    }
    ASSERT_EQ(warnings.size(), 1u);
    EXPECT_EQ(warnings[0], (tmp.path / "tokenizer.json").string() +
                               ": model.byte_fallback is true but 16 of the 256 byte tokens are not in the vocabulary "
                               "(e.g. '<0xE0>') and there is no model.unk_token: a character without a token that has "
                               "one of those bytes is dropped from the ids, as Hugging Face drops it");
  }
  kq::testing::TempDir tmp;
  tj["model"]["unk_token"] = "<unk>";
  tj["added_tokens"][1]["normalized"] = true;  // <s>
  write_file(tmp.path / "tokenizer.json", tj.dump());
  std::vector<std::string> warnings;
  (void)load_collecting_warnings(tmp.path, warnings);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find(": added token settings are ignored: '<s>' (normalized)."), std::string::npos)
      << warnings[0];
}

// model.ignore_merges: the whole word (text with "▁") that is a vocabulary
// token is that token ("▁abc", which no merge builds).
TEST(TokenizerSentencePiece, IgnoreMergesLooksTheWordUp) {
  for (const bool ignore : {false, true}) {
    kq::testing::TempDir tmp;
    json tj = sp_tokenizer_json(Layout::kMetaspace);
    tj["model"]["ignore_merges"] = ignore;
    const Tokenizer t = load_json(tmp, tj);
    EXPECT_EQ(t.encode("abc"), ignore ? Ids{kMetaAbc} : (Ids{kMetaA, kBc}));
    EXPECT_EQ(t.encode("abcb"), (Ids{kMetaA, kBc, kB}));
  }
}

// The whole text is one word: 1 MB without spaces is merged in O(n log n)
// (a quadratic merge loop would not finish here), twice (words longer than
// WordCache::kMaxKeyBytes are not cached, so the second run merges again).
TEST(TokenizerSentencePiece, OneMegabyteWordIsMerged) {
  kq::testing::TempDir tmp;
  const Tokenizer t = load_json(tmp, sp_tokenizer_json(Layout::kLegacy));
  std::string text;
  for (int i = 0; i < 350000; ++i) text += "abc";
  Ids want = {kMetaA, kBc};  // "▁abcabc...": every "b c" first, then "▁ a" once
  for (int i = 1; i < 350000; ++i) want.insert(want.end(), {kA, kBc});
  for (int round = 0; round < 2; ++round) {
    const Ids ids = t.encode(text);
    ASSERT_EQ(ids, want);
    EXPECT_EQ(t.decode(ids), text);
  }
}

// SentencePiece layouts kq does not run are Unsupported naming the file and
// the part; malformed values are FormatErrors.
TEST(TokenizerSentencePiece, UnsupportedLayoutsAreNamed) {
  const json meta = sp_tokenizer_json(Layout::kMetaspace), legacy = sp_tokenizer_json(Layout::kLegacy);
  std::vector<std::pair<json, std::string>> unsupported;
  json x = meta;
  x["pre_tokenizer"]["split"] = true;
  unsupported.push_back({x, "the Metaspace pre_tokenizer with split=true"});
  x = meta;
  x["pre_tokenizer"].erase("split");  // Hugging Face's default is true
  unsupported.push_back({x, "the Metaspace pre_tokenizer with split=true"});
  x = meta;
  x["pre_tokenizer"]["replacement"] = "_";
  unsupported.push_back({x, "the Metaspace pre_tokenizer with replacement \"_\" is not supported"});
  x = legacy;
  x["normalizer"]["normalizers"][1] = json{{"type", "Lowercase"}};
  unsupported.push_back({x, "a normalizer (Sequence [Prepend, Lowercase]) is not supported"});
  x = legacy;
  x["normalizer"]["normalizers"][0]["prepend"] = " ";
  unsupported.push_back({x, "a normalizer (Sequence [Prepend, Replace]) is not supported"});
  x = meta;  // (with a byte-level pre_tokenizer NFKC is run: tokenizer_normalizer_test.cpp)
  x["normalizer"] = json{{"type", "NFKC"}};
  unsupported.push_back({x, "a normalizer (NFKC) is not supported"});
  x = legacy;
  x["pre_tokenizer"] = meta["pre_tokenizer"];
  unsupported.push_back({x, "the pre_tokenizer {"});
  x = meta;
  x["model"]["dropout"] = 0.1;
  unsupported.push_back({x, "BPE dropout is not supported"});
  for (const auto& [tj, needle] : unsupported) {
    kq::testing::TempDir tmp;
    write_file(tmp.path / "tokenizer.json", tj.dump());
    expect_error<kq::Unsupported>([&] { Tokenizer::load(tmp.path); },
                                  {(tmp.path / "tokenizer.json").string() + ": ", needle});
  }
  x = meta;
  x["pre_tokenizer"]["prepend_scheme"] = "sometimes";
  kq::testing::TempDir tmp;
  write_file(tmp.path / "tokenizer.json", x.dump());
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {"tokenizer.json", "prepend_scheme", "sometimes"});
  // Older files: add_prefix_space true is "always" (the default), false must come with "never" (as Hugging Face).
  x = meta;
  x["pre_tokenizer"].erase("prepend_scheme");
  x["pre_tokenizer"]["add_prefix_space"] = true;
  EXPECT_EQ(load_json(tmp, x).encode("hello</s>hello", {.allow_special = true}), (Ids{kMetaHello, kEos, kMetaHello}));
  x["pre_tokenizer"]["add_prefix_space"] = false;
  write_file(tmp.path / "tokenizer.json", x.dump());
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {"add_prefix_space false", "must be \"never\""});
  x["pre_tokenizer"]["prepend_scheme"] = "never";
  EXPECT_EQ(load_json(tmp, x).encode("hello"), Ids{kHello});
  // Multi-character pieces without merges: refused as for byte-level BPE.
  x = meta;
  x["model"]["merges"] = json::array();
  write_file(tmp.path / "tokenizer.json", x.dump());
  expect_error<kq::FormatError>([&] { Tokenizer::load(tmp.path); }, {"no merges", "multi-character tokens"});
}

// Gemma's tokenizer.json (Gemma 3: gemma-3-1b-it): SentencePiece BPE with byte fallback, a normalizer that is
// the Replace " " -> "▁" alone (no Prepend: SentencePiece's add_dummy_prefix is off, no "▁" before the text),
// no pre_tokenizer, a decoder without Strip, and a TemplateProcessing post_processor putting <bos> before the
// text (with tokenizer_config.json's add_bos_token true, as Gemma's says). It loads as is: the text gets no
// leading "▁", its spaces are "▁", unknown characters their bytes, decode gives the text back, and the prompt
// prefix is <bos>.
TEST(TokenizerSentencePiece, GemmaLayoutWithoutDummyPrefixAndBosPrefix) {
  json tj = sp_tokenizer_json(Layout::kLegacy);
  tj["normalizer"] = json{{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}};
  tj["decoder"] = strip_decoder(false);
  tj["model"]["vocab"].erase("<s>");
  tj["model"]["vocab"]["<bos>"] = kBos;
  tj["added_tokens"][1]["content"] = "<bos>";
  tj["post_processor"] =
      json{{"type", "TemplateProcessing"},
           {"single", json::array({json{{"SpecialToken", {{"id", "<bos>"}, {"type_id", 0}}}},
                                   json{{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
           {"pair", json::array()},
           {"special_tokens", {{"<bos>", {{"id", "<bos>"}, {"ids", {kBos}}, {"tokens", {"<bos>"}}}}}}};
  kq::testing::TempDir tmp;
  write_file(tmp.path / "tokenizer.json", tj.dump());
  write_file(
      tmp.path / "tokenizer_config.json",
      json{{"add_bos_token", true}, {"add_eos_token", false}, {"bos_token", "<bos>"}, {"eos_token", "</s>"}}
          .dump());
  std::vector<std::string> warnings;
  const Tokenizer t = load_collecting_warnings(tmp.path, warnings);
  EXPECT_EQ(t.source(), "tokenizer.json");
  EXPECT_EQ(t.prompt_prefix(), Ids{kBos});
  EXPECT_EQ(t.bos_token_id(), kBos);
  // "hello▁world": no "▁" before the text; ▁wor from "▁ w" and "▁w or".
  EXPECT_EQ(t.encode("hello world"), (Ids{kHello, kMetaWor, kL, kD}));
  EXPECT_EQ(t.encode(" hello"), Ids{kMetaHello});                        // a leading space is the "▁"
  EXPECT_EQ(t.encode("\xC3\xA9"), (Ids{byte_id(0xC3), byte_id(0xA9)}));  // é: its bytes
  for (const std::string text : {"hello world", " hello  world", "\xC3\xA9t\xC3\xA9 a\nb"})
    EXPECT_EQ(t.decode(t.encode(text)), text);  // no Strip: a leading space is kept
}
