// tokenizer.json's Unicode normalizers (NFC, NFD, NFKC, NFKD; Qwen2 / Qwen2.5
// give NFC): tok::normalize against known values of the Unicode Standard
// (UAX #15 and UnicodeData.txt decompositions, cross-checked with Python's
// unicodedata), and a tiny Qwen2-like tokenizer.json whose decomposed input
// tokenizes as the composed one, as Hugging Face normalizes before it
// pre-tokenizes.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/normalizer.hpp"
#include "tokenizer/tokenizer_test_util.hpp"

using kq::Tokenizer;
using kq::tok::normalize;
using kq::tok::UnicodeForm;
using json = nlohmann::json;
using Ids = std::vector<int32_t>;
namespace fs = std::filesystem;

using kq::testing::expect_error;
using kq::testing::write_file;

namespace {

/// Qwen2 / Qwen2.5's Split regex (their tokenizer.json).
constexpr const char* kQwen2Regex =
    R"re((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|)re"
    R"re(\s+(?!\S)|\s+)re";

// Extra tokens of the tiny vocabulary (raw bytes; ids from 256 on) and their merges.
constexpr int32_t kCa = 256, kCaf = 257, kEAcute = 258, kCafe = 259, kGa = 261, kFi = 262, kEndOfText = 263;
const std::vector<std::string> kExtra = {"ca", "caf", "\u00e9", "caf\u00e9", "\xEA\xB0", "\uac00", "fi"};
const std::vector<std::pair<std::string, std::string>> kMerges = {
    {"c", "a"}, {"ca", "f"}, {"\xC3", "\xA9"}, {"caf", "\u00e9"}, {"\xEA", "\xB0"}, {"\xEA\xB0", "\x80"}, {"f", "i"}};

std::string sym(std::string_view bytes) { return kq::tok::bytes_to_symbols(std::string(bytes)); }

/// A tokenizer.json laid out as Qwen2.5's (normalizer, Split + ByteLevel
/// pre_tokenizer, ByteLevel post_processor and decoder, <|endoftext|> added
/// with normalized false) with the 256 byte symbols (id = byte value), kExtra
/// and kMerges.
json qwen2_like(const json& normalizer) {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[sym(std::string(1, char(b)))] = b;
  for (size_t i = 0; i < kExtra.size(); ++i) vocab[sym(kExtra[i])] = 256 + int(i);
  json merges = json::array();
  for (const auto& [a, b] : kMerges) merges.push_back(sym(a) + " " + sym(b));
  const json byte_level = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false},
                           {"use_regex", false}};
  const json split = {{"type", "Split"}, {"pattern", {{"Regex", kQwen2Regex}}}, {"behavior", "Isolated"},
                      {"invert", false}};
  return json{{"version", "1.0"},
              {"truncation", nullptr},
              {"padding", nullptr},
              {"added_tokens", json::array({json{{"id", kEndOfText},
                                                 {"content", "<|endoftext|>"},
                                                 {"single_word", false},
                                                 {"lstrip", false},
                                                 {"rstrip", false},
                                                 {"normalized", false},
                                                 {"special", true}}})},
              {"normalizer", normalizer},
              {"pre_tokenizer", {{"type", "Sequence"}, {"pretokenizers", json::array({split, byte_level})}}},
              {"post_processor", byte_level},
              {"decoder", byte_level},
              {"model", {{"type", "BPE"},
                         {"dropout", nullptr},
                         {"unk_token", nullptr},
                         {"continuing_subword_prefix", ""},
                         {"end_of_word_suffix", ""},
                         {"fuse_unk", false},
                         {"byte_fallback", false},
                         {"ignore_merges", false},
                         {"vocab", vocab},
                         {"merges", merges}}}};
}

Tokenizer load_json(const fs::path& dir, const json& tj) {
  write_file(dir / "tokenizer.json", tj.dump());
  return Tokenizer::load(dir);
}

const json kNfc = {{"type", "NFC"}};

}  // namespace

// Known values: canonical composition (UAX #15), singletons, Hangul syllable
// composition (the Unicode Standard, 3.12), canonical reordering, composition
// exclusions, compatibility decompositions (UnicodeData.txt).
TEST(TokenizerNormalizer, KnownPairsOfEachForm) {
  const std::vector<std::tuple<UnicodeForm, std::string, std::string>> cases = {
      {UnicodeForm::kNfc, "e\u0301", "\u00e9"},                 // e + COMBINING ACUTE ACCENT -> é
      {UnicodeForm::kNfc, "\u212b", "\u00c5"},                  // ANGSTROM SIGN -> Å (singleton)
      {UnicodeForm::kNfc, "\u2126", "\u03a9"},                  // OHM SIGN -> Ω (singleton)
      {UnicodeForm::kNfc, "\u1100\u1161", "\uac00"},            // Hangul L + V -> 가
      {UnicodeForm::kNfc, "\u1100\u1161\u11a8", "\uac01"},      // L + V + T -> 각
      {UnicodeForm::kNfc, "\u1e0b\u0323", "\u1e0d\u0307"},      // ḋ + dot below -> ḍ + dot above (UAX #15)
      {UnicodeForm::kNfc, "\u0958", "\u0915\u093c"},            // DEVANAGARI QA: a composition exclusion
      {UnicodeForm::kNfc, "\ufb01", "\ufb01"},                  // ﬁ: compatibility only, kept by NFC
      {UnicodeForm::kNfd, "\u00e9", "e\u0301"},
      {UnicodeForm::kNfd, "\uac00", "\u1100\u1161"},
      {UnicodeForm::kNfd, "\u1e0b\u0323", "d\u0323\u0307"},
      {UnicodeForm::kNfkc, "\ufb01", "fi"},                     // LATIN SMALL LIGATURE FI
      {UnicodeForm::kNfkc, "\u2460", "1"},                      // CIRCLED DIGIT ONE
      {UnicodeForm::kNfkc, "\uff28", "H"},                      // FULLWIDTH LATIN CAPITAL LETTER H
      {UnicodeForm::kNfkc, "e\u0301\ufb01", "\u00e9fi"},
      {UnicodeForm::kNfkd, "\u00bd", "1\u20442"},               // VULGAR FRACTION ONE HALF -> 1 ⁄ 2
      {UnicodeForm::kNfkd, "\u00e9", "e\u0301"},
  };
  for (const auto& [form, in, want] : cases) EXPECT_EQ(normalize(in, form), want) << int(form) << " " << in;
  // Text already in the form is unchanged (ASCII by every form).
  const std::string nfc = "Hello, world \u2014 \u00e7a va? \u65e5\u672c\u8a9e \uac00 \U0001F600 \u00c5";
  EXPECT_EQ(normalize(nfc, UnicodeForm::kNfc), nfc);
  for (const UnicodeForm f : {UnicodeForm::kNfc, UnicodeForm::kNfd, UnicodeForm::kNfkc, UnicodeForm::kNfkd})
    EXPECT_EQ(normalize("plain ASCII\ttext\n", f), "plain ASCII\ttext\n");
  // A NUL is a character like any other (utf8proc is given the length, not a C string).
  EXPECT_EQ(normalize(std::string("e\0e\u0301", 5), UnicodeForm::kNfc), std::string("e\0\u00e9", 4));
  // A Sequence applies its forms in order.
  EXPECT_EQ(normalize("\ufb01\u212b", {UnicodeForm::kNfkd, UnicodeForm::kNfc}), "fi\u00c5");
  EXPECT_EQ(normalize("\u00e9", std::vector<UnicodeForm>{}), "\u00e9");
  EXPECT_EQ(kq::tok::unicode_form("NFKD"), UnicodeForm::kNfkd);
  EXPECT_FALSE(kq::tok::unicode_form("nfc").has_value());  // Hugging Face's type names are case-sensitive
}

// Bytes that are not well-formed UTF-8 are kept in place (kq encodes any
// byte string); the well-formed runs around them are normalized on their own.
TEST(TokenizerNormalizer, InvalidBytesAreKeptInPlace) {
  EXPECT_EQ(normalize("e\u0301\xFF", UnicodeForm::kNfc), "\u00e9\xFF");
  EXPECT_EQ(normalize("\xFF" "e\u0301", UnicodeForm::kNfc), "\xFF\u00e9");
  EXPECT_EQ(normalize("e\xFF\u0301", UnicodeForm::kNfc), "e\xFF\u0301");  // not composed across the byte
  EXPECT_EQ(normalize("\u212b\xC3", UnicodeForm::kNfc), "\u00c5\xC3");     // a truncated sequence at the end
  EXPECT_EQ(normalize("\xED\xA0\x80\u212b\xC0\xAF", UnicodeForm::kNfd), "\xED\xA0\x80" "A\u030a\xC0\xAF");
  EXPECT_EQ(normalize("\x80\x80\xFE", UnicodeForm::kNfkc), "\x80\x80\xFE");
}

// A Qwen2-like tokenizer.json with the NFC normalizer: decomposed input
// tokenizes as the composed one (Hugging Face normalizes the text before the
// Split regex), its ids are those of the tiny vocabulary's BPE, and decode
// gives the normalized text. Without the normalizer the same input splits
// before the combining mark.
TEST(TokenizerNormalizer, Qwen2NfcTokenizesDecomposedTextAsComposed) {
  kq::testing::TempDir tmp, plain_dir;
  const Tokenizer t = load_json(tmp.path, qwen2_like(kNfc));
  EXPECT_EQ(t.source(), "tokenizer.json");
  EXPECT_EQ(t.encode("caf\u00e9"), Ids({kCafe}));
  EXPECT_EQ(t.encode("cafe\u0301"), Ids({kCafe}));
  EXPECT_EQ(t.decode(t.encode("cafe\u0301")), "caf\u00e9");
  EXPECT_EQ(t.encode("\u1100\u1161"), Ids({kGa}));
  EXPECT_EQ(t.encode("\uac00"), Ids({kGa}));
  EXPECT_EQ(t.encode("ca e\u0301"), Ids({kCa, ' ', kEAcute}));
  EXPECT_EQ(t.encode("\ufb01"), Ids({0xEF, 0xAC, 0x81}));  // NFC keeps the ligature
  // Without the normalizer: "cafe" and the combining mark are two pre-tokens.
  const Tokenizer plain = load_json(plain_dir.path, qwen2_like(nullptr));
  EXPECT_EQ(plain.encode("cafe\u0301"), Ids({kCaf, 'e', 0xCC, 0x81}));
  EXPECT_EQ(plain.encode("caf\u00e9"), Ids({kCafe}));
}

// Added tokens are matched in the text as written (normalized false, as
// Qwen2's are) and each part between them is normalized on its own, as
// Hugging Face normalizes the parts between its added tokens.
TEST(TokenizerNormalizer, PartsBetweenAddedTokensAreNormalizedEachOnItsOwn) {
  kq::testing::TempDir tmp;
  const Tokenizer t = load_json(tmp.path, qwen2_like(kNfc));
  const kq::EncodeOptions special{.allow_special = true};
  EXPECT_EQ(t.encode("cafe\u0301<|endoftext|>cafe\u0301", special), Ids({kCafe, kEndOfText, kCafe}));
  EXPECT_EQ(t.encode("e<|endoftext|>\u0301", special), Ids({'e', kEndOfText, 0xCC, 0x81}));
  // Without allow_special the whole text is one part.
  EXPECT_EQ(t.encode("cafe\u0301<|endoftext|>").front(), kCafe);
}

/// `tj` with one more added token (id 264, 265, ... in order of the calls).
void add_token(json& tj, const std::string& content, bool special, bool normalized) {
  tj["added_tokens"].push_back(json{{"id", 263 + int(tj["added_tokens"].size())},
                                    {"content", content},
                                    {"single_word", false},
                                    {"lstrip", false},
                                    {"rstrip", false},
                                    {"normalized", normalized},
                                    {"special", special}});
}

// Tester round 18, finding 2: Hugging Face splits a text on every added token
// that is not special, whatever split_special_tokens says (kq matched no added
// token at all without allow_special / --special-tokens); a special one only
// with allow_special, as before.
TEST(TokenizerAddedTokens, NonSpecialOnesAreMatchedWithoutAllowSpecial) {
  kq::testing::TempDir tmp;
  json tj = qwen2_like(kNfc);
  add_token(tj, "<tool_call>", /*special=*/false, /*normalized=*/false);  // 264, as Qwen2.5's
  add_token(tj, "<|im_start|>", /*special=*/true, /*normalized=*/false);  // 265
  const Tokenizer t = load_json(tmp.path, tj);
  EXPECT_EQ(t.encode("ca<tool_call>ca"), Ids({kCa, 264, kCa}));
  EXPECT_EQ(t.decode(t.encode("ca<tool_call>ca")), "ca<tool_call>ca");
  // The special ones stay text unless allow_special.
  const Ids plain = t.encode("ca<|im_start|><|endoftext|>");
  EXPECT_EQ(std::count(plain.begin(), plain.end(), 265), 0);
  EXPECT_EQ(std::count(plain.begin(), plain.end(), kEndOfText), 0);
  EXPECT_EQ(t.decode(plain), "ca<|im_start|><|endoftext|>");
  const kq::EncodeOptions special{.allow_special = true};
  EXPECT_EQ(t.encode("ca<|im_start|><tool_call><|endoftext|>", special), Ids({kCa, 265, 264, kEndOfText}));
  // Each part between them is normalized on its own, with or without allow_special.
  EXPECT_EQ(t.encode("e<tool_call>\u0301"), Ids({'e', 264, 0xCC, 0x81}));
}

// A "normalized": true added token is matched in the normalized text, its
// content normalized too (an NFD "ḱ" in the text, or in tokenizer.json, under
// the NFC normalizer), after the "normalized": false ones were found in the
// raw text (Hugging Face's two passes: "ab" wins over the earlier "xa" in
// "xab").
TEST(TokenizerAddedTokens, NormalizedOnesAreMatchedInTheNormalizedText) {
  kq::testing::TempDir tmp;
  json tj = qwen2_like(kNfc);
  add_token(tj, "\u1e31", /*special=*/false, /*normalized=*/true);    // 264: ḱ (NFC)
  add_token(tj, "ab", /*special=*/false, /*normalized=*/false);        // 265
  add_token(tj, "xa", /*special=*/false, /*normalized=*/true);         // 266
  add_token(tj, "g\u0301", /*special=*/false, /*normalized=*/true);  // 267: ǵ given in NFD
  const Tokenizer t = load_json(tmp.path, tj);
  EXPECT_EQ(t.encode("xk\u0301y x\u1e31y"), Ids({'x', 264, 'y', ' ', 'x', 264, 'y'}));
  EXPECT_EQ(t.encode("xab"), Ids({'x', 265}));
  EXPECT_EQ(t.encode("xac"), Ids({266, 'c'}));
  EXPECT_EQ(t.encode("\u01f5 g\u0301"), Ids({267, ' ', 267}));
  // A "normalized": false token is matched as written only: NFD text does not match an NFC token.
  kq::testing::TempDir raw_dir;
  json raw = qwen2_like(kNfc);
  add_token(raw, "\u1e31", /*special=*/false, /*normalized=*/false);
  const Tokenizer r = load_json(raw_dir.path, raw);
  EXPECT_EQ(r.encode("x\u1e31"), Ids({'x', 264}));
  const Ids nfd = r.encode("xk\u0301");
  EXPECT_EQ(std::count(nfd.begin(), nfd.end(), 264), 0);
}

// Invalid UTF-8 goes through as before the normalizer: kept byte for byte,
// encoded as bytes; the well-formed text around it is normalized.
TEST(TokenizerNormalizer, InvalidUtf8IsEncodedAsItsBytes) {
  kq::testing::TempDir tmp;
  const Tokenizer t = load_json(tmp.path, qwen2_like(kNfc));
  const std::string broken = "cafe\xFF\u0301";
  EXPECT_EQ(t.encode(broken), Ids({kCaf, 'e', 0xFF, 0xCC, 0x81}));
  EXPECT_EQ(t.decode(t.encode(broken)), broken);
  EXPECT_EQ(t.encode("cafe\u0301\xC3"), Ids({kCafe, 0xC3}));
  EXPECT_EQ(t.decode(t.encode("cafe\u0301\xC3")), "caf\u00e9\xC3");
}

// NFKC, NFD and a Sequence of Unicode forms are run too; a Sequence with any
// other normalizer, and a Unicode normalizer with a Metaspace pre_tokenizer,
// are still Unsupported, naming the file and the normalizer.
TEST(TokenizerNormalizer, OtherFormsAndSequences) {
  {
    kq::testing::TempDir tmp;
    const Tokenizer t = load_json(tmp.path, qwen2_like({{"type", "NFKC"}}));
    EXPECT_EQ(t.encode("\ufb01"), Ids({kFi}));
    EXPECT_EQ(t.encode("cafe\u0301"), Ids({kCafe}));
  }
  {
    kq::testing::TempDir tmp;
    const Tokenizer t = load_json(tmp.path, qwen2_like({{"type", "NFD"}}));
    EXPECT_EQ(t.encode("caf\u00e9"), Ids({kCaf, 'e', 0xCC, 0x81}));
  }
  {
    kq::testing::TempDir tmp;
    const json seq = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFKD"}}, kNfc})}};
    const Tokenizer t = load_json(tmp.path, qwen2_like(seq));
    EXPECT_EQ(t.encode("\ufb01"), Ids({kFi}));
    EXPECT_EQ(t.encode("caf\u00e9"), Ids({kCafe}));
  }
  const std::vector<std::pair<json, std::string>> unsupported = {
      {{{"type", "Sequence"}, {"normalizers", json::array({kNfc, {{"type", "Lowercase"}}})}},
       "a normalizer (Sequence [NFC, Lowercase]) is not supported"},
      {{{"type", "nfc"}}, "a normalizer (nfc) is not supported"},
  };
  for (const auto& [normalizer, needle] : unsupported) {
    kq::testing::TempDir tmp;
    expect_error<kq::Unsupported>([&] { load_json(tmp.path, qwen2_like(normalizer)); },
                                  {(tmp.path / "tokenizer.json").string() + ": ", needle});
  }
  kq::testing::TempDir tmp;
  json meta = qwen2_like(kNfc);
  meta["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"split", false}};
  expect_error<kq::Unsupported>([&] { load_json(tmp.path, meta); }, {"a normalizer (NFC) is not supported"});
}

// The message refusing a normalizer lists every one kq runs, the Unicode forms
// and the SentencePiece ones, whichever layout refused it (it listed only the
// SentencePiece forms for a Sequence; tester round 17b).
TEST(TokenizerNormalizer, RefusalListsEverySupportedNormalizer) {
  const std::vector<std::string> supported = {
      "supported: NFC, NFD, NFKC or NFKD, alone or in a Sequence of them, with a byte-level pre_tokenizer",
      "Sequence [Prepend \"\u2581\", Replace \" \" -> \"\u2581\"] or that Replace alone",
      "or none, an empty Sequence"};
  json meta = qwen2_like(kNfc);
  meta["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", "\u2581"}, {"split", false}};
  const json lower = {{"type", "Lowercase"}};
  for (const json& tj :
       {qwen2_like({{"type", "Sequence"}, {"normalizers", json::array({kNfc, lower})}}), qwen2_like(lower), meta}) {
    kq::testing::TempDir tmp;
    std::vector<std::string> needles = supported;
    needles.push_back((tmp.path / "tokenizer.json").string() + ": a normalizer (");
    expect_error<kq::Unsupported>([&] { load_json(tmp.path, tj); }, needles);
  }
}

// An empty Sequence is Hugging Face's identity: no normalizer (it was refused,
// and with vocab.json + merges.txt beside it they were used instead). A nested
// Sequence runs its members in place: read flattened, refused naming the
// nesting when a member is not supported.
TEST(TokenizerNormalizer, EmptyAndNestedSequences) {
  {
    kq::testing::TempDir tmp;
    const Tokenizer t = load_json(tmp.path, qwen2_like({{"type", "Sequence"}, {"normalizers", json::array()}}));
    EXPECT_EQ(t.source(), "tokenizer.json");
    EXPECT_EQ(t.encode("cafe\u0301"), Ids({kCaf, 'e', 0xCC, 0x81}));  // as without a normalizer
  }
  {
    kq::testing::TempDir tmp;
    const json inner = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "NFKD"}}})}};
    const json empty = {{"type", "Sequence"}, {"normalizers", json::array()}};
    const Tokenizer t =
        load_json(tmp.path, qwen2_like({{"type", "Sequence"}, {"normalizers", json::array({inner, empty, kNfc})}}));
    EXPECT_EQ(t.encode("\ufb01"), Ids({kFi}));  // NFKD, then NFC
    EXPECT_EQ(t.encode("caf\u00e9"), Ids({kCafe}));
  }
  {
    kq::testing::TempDir tmp;
    const json inner = {{"type", "Sequence"}, {"normalizers", json::array({{{"type", "Lowercase"}}})}};
    expect_error<kq::Unsupported>(
        [&] { load_json(tmp.path, qwen2_like({{"type", "Sequence"}, {"normalizers", json::array({kNfc, inner})}})); },
        {(tmp.path / "tokenizer.json").string() + ": a normalizer (Sequence [NFC, Sequence [Lowercase]]) is not "
                                                  "supported (supported: "});
  }
}

// A normalizer "type" that is not a string is a FormatError naming the file
// and the field (it was nlohmann's "type must be string, but is number").
TEST(TokenizerNormalizer, NonStringTypeIsAFormatErrorNamingTheField) {
  const std::vector<std::pair<json, std::string>> cases = {
      {{{"type", 5}}, "normalizer.type must be a string (the normalizer's name), got 5"},
      {{{"type", "Sequence"}, {"normalizers", json::array({kNfc, {{"type", json::array({"NFC"})}}})}},
       "normalizer.normalizers[1].type must be a string (the normalizer's name), got [\"NFC\"]"},
  };
  for (const auto& [normalizer, needle] : cases) {
    kq::testing::TempDir tmp;
    expect_error<kq::FormatError>([&] { load_json(tmp.path, qwen2_like(normalizer)); },
                                  {(tmp.path / "tokenizer.json").string() + ": " + needle});
  }
}

// The same for the other components and their Sequences' members (they gave
// nlohmann's "type must be string, but is number" too).
TEST(TokenizerComponentTypes, NonStringTypeOfAnyComponentIsAFormatErrorNamingTheField) {
  std::vector<std::pair<json, std::string>> cases;
  json tj = qwen2_like(kNfc);
  tj["pre_tokenizer"]["type"] = 5;
  cases.push_back({tj, "pre_tokenizer.type must be a string (the pre_tokenizer's name), got 5"});
  tj = qwen2_like(kNfc);
  tj["pre_tokenizer"]["pretokenizers"][1]["type"] = true;
  cases.push_back({tj, "pre_tokenizer.pretokenizers[1].type must be a string (the pre_tokenizer's name), got true"});
  tj = qwen2_like(kNfc);
  tj["post_processor"]["type"] = 5;
  cases.push_back({tj, "post_processor.type must be a string (the post_processor's name), got 5"});
  tj = qwen2_like(kNfc);
  tj["decoder"] = {{"type", "Sequence"}, {"decoders", json::array({{{"type", json::object()}}})}};
  cases.push_back({tj, "decoder.decoders[0].type must be a string (the decoder's name), got {}"});
  for (const auto& [t, needle] : cases) {
    kq::testing::TempDir tmp;
    expect_error<kq::FormatError>([&] { load_json(tmp.path, t); },
                                  {(tmp.path / "tokenizer.json").string() + ": " + needle});
  }
}
