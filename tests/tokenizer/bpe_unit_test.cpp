// Unit tests of the pieces: GPT-2 bytes_to_unicode, UTF-8 helpers, the GPT-2
// pre-tokenization regex, and the BPE merge order on hand-made vocabularies.
#include <gtest/gtest.h>

#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/tokenizer.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/utf8.hpp"

using kq::Tokenizer;
using Ids = std::vector<int32_t>;
using Pieces = std::vector<std::string_view>;

namespace {

/// Writes vocab.json (the 256 byte symbols with id = byte value, then
/// `extra` with ids 256, 257, ...) and merges.txt into `dir`.
void write_mini_tokenizer(const std::filesystem::path& dir, const std::vector<std::string>& extra,
                          const std::vector<std::string>& merges) {
  nlohmann::json v = nlohmann::json::object();
  for (int b = 0; b < 256; ++b) v[kq::tok::bytes_to_symbols(std::string(1, char(b)))] = b;
  for (size_t i = 0; i < extra.size(); ++i) v[extra[i]] = 256 + int(i);
  std::ofstream(dir / "vocab.json") << v.dump();
  std::ofstream m(dir / "merges.txt");
  m << "#version: 0.2\n";
  for (const auto& line : merges) m << line << "\n";
}

Pieces split(std::string_view text) {
  static const kq::tok::Pretokenizer pre;
  Pieces p;
  pre.split(text, p);
  return p;
}

}  // namespace

TEST(ByteUnicode, MatchesGpt2Table) {
  // Printable bytes map to themselves; the 68 others to U+0100.. in byte order.
  EXPECT_EQ(kq::tok::byte_to_unicode('A'), U'A');
  EXPECT_EQ(kq::tok::byte_to_unicode(0x00), char32_t(0x100));
  EXPECT_EQ(kq::tok::byte_to_unicode(' '), char32_t(0x120));   // 'Ġ'
  EXPECT_EQ(kq::tok::byte_to_unicode('\n'), char32_t(0x10A));  // 'Ċ'
  EXPECT_EQ(kq::tok::byte_to_unicode(0x7F), char32_t(0x121));
  EXPECT_EQ(kq::tok::byte_to_unicode(0xA0), char32_t(0x142));
  EXPECT_EQ(kq::tok::byte_to_unicode(0xAD), char32_t(0x143));
  EXPECT_EQ(kq::tok::byte_to_unicode(0xE9), char32_t(0xE9));  // 'é'
  std::set<char32_t> seen;
  for (int b = 0; b < 256; ++b) {
    const char32_t cp = kq::tok::byte_to_unicode(uint8_t(b));
    EXPECT_TRUE(seen.insert(cp).second);
    EXPECT_EQ(kq::tok::unicode_to_byte(cp), b);
    EXPECT_LE(cp, char32_t(0x143));
  }
  EXPECT_EQ(kq::tok::unicode_to_byte(0x144), -1);
  EXPECT_EQ(kq::tok::bytes_to_symbols(" the\n"), "\xC4\xA0the\xC4\x8A");  // "Ġthe" "Ċ"
  EXPECT_EQ(kq::tok::symbols_to_bytes("\xC4\xA0the\xC4\x8A"), " the\n");
  EXPECT_EQ(kq::tok::symbols_to_bytes("<|endoftext|>"), "<|endoftext|>");
}

TEST(Utf8, EncodeDecodeAndIncompleteTail) {
  for (char32_t cp : {char32_t(0), char32_t(0x7F), char32_t(0x80), char32_t(0x7FF), char32_t(0x800),
                      char32_t(0xFFFF), char32_t(0x10000), char32_t(0x10FFFF)}) {
    std::string s;
    kq::tok::append_utf8(s, cp);
    char32_t back = 0;
    EXPECT_EQ(kq::tok::decode_utf8(s, 0, back), s.size());
    EXPECT_EQ(back, cp);
    for (size_t k = 1; k < s.size(); ++k) EXPECT_EQ(kq::tok::incomplete_utf8_tail(s.substr(0, k)), k);
    EXPECT_EQ(kq::tok::incomplete_utf8_tail(s), 0u);
  }
  char32_t cp = 0;
  for (std::string bad : {"\xC0\x80", "\xED\xA0\x80", "\xF4\x90\x80\x80", "\x80", "\xF5\x80\x80\x80", "\xE6\x97"})
    EXPECT_EQ(kq::tok::decode_utf8(bad, 0, cp), 0u) << bad.size();
  EXPECT_EQ(kq::tok::incomplete_utf8_tail("\xE0\x9F"), 0u);  // overlong 3-byte form can never complete
  EXPECT_EQ(kq::tok::incomplete_utf8_tail("\xE0\xA0"), 2u);
}

TEST(Pretokenizer, Gpt2RegexSplits) {
  EXPECT_EQ(split("Hello world"), (Pieces{"Hello", " world"}));
  EXPECT_EQ(split("it's they're I'll we've"),
            (Pieces{"it", "'s", " they", "'re", " I", "'ll", " we", "'ve"}));
  EXPECT_EQ(split("IT'S"), (Pieces{"IT", "'", "S"}));  // contractions are case-sensitive
  // \s+(?!\S) leaves the last space to the next word.
  EXPECT_EQ(split("  multiple   spaces\n\n\ttabs"),
            (Pieces{" ", " multiple", "  ", " spaces", "\n\n", "\t", "tabs"}));
  EXPECT_EQ(split("x  "), (Pieces{"x", "  "}));
  EXPECT_EQ(split("12345 3.14159 1e-9"), (Pieces{"12345", " 3", ".", "14159", " 1", "e", "-", "9"}));
  EXPECT_EQ(split("def f(x):\n    return x**2"),
            (Pieces{"def", " f", "(", "x", "):", "\n   ", " return", " x", "**", "2"}));
  // Unicode classes: letters (\p{L}) incl. CJK, numbers (\p{N}) incl. other scripts' digits.
  EXPECT_EQ(split("日本語 ١٢٣ Ünï—✓"), (Pieces{"日本語", " ١٢٣", " Ünï", "—✓"}));
  EXPECT_EQ(split("\xC2\xA0" "a"), (Pieces{"\xC2\xA0", "a"}));  // NBSP is \s; no space prefix rule for it
  EXPECT_EQ(split(""), Pieces{});
  // Pieces always cover the input exactly, even for long runs.
  const std::string long_run(200000, ' ');
  const std::string text = long_run + "a" + std::string(100000, 'b') + long_run;
  std::string joined;
  for (auto p : split(text)) joined += p;
  EXPECT_EQ(joined, text);
}

TEST(Bpe, MergeOrderFollowsRankThenPosition) {
  kq::testing::TempDir tmp;
  // ids: "bc"=256, "ab"=257, "abc"=258 (unused), "aa"=259, "aaaa"=260
  write_mini_tokenizer(tmp.path, {"bc", "ab", "abc", "aa", "aaaa"}, {"b c", "a b", "a a", "aa aa"});
  const Tokenizer t = Tokenizer::load(tmp.path);
  EXPECT_EQ(t.vocab_size(), 261);
  EXPECT_EQ(t.num_merges(), 4u);
  // "b c" has the lower rank, so "abc" -> a + bc although "a b" also applies.
  EXPECT_EQ(t.encode("abc"), (Ids{'a', 256}));
  EXPECT_EQ(t.encode("abd"), (Ids{257, 'd'}));
  // Equal ranks merge leftmost first: "aaa" -> aa + a; "aaaaa" -> aaaa + a.
  EXPECT_EQ(t.encode("aaa"), (Ids{259, 'a'}));
  EXPECT_EQ(t.encode("aaaaa"), (Ids{260, 'a'}));
  EXPECT_EQ(t.encode("aaaaaa"), (Ids{260, 259}));
  // Merges never cross pre-token boundaries: " a" and "a" are separate words.
  EXPECT_EQ(t.encode("a a"), (Ids{'a', ' ', 'a'}));  // byte tokens have id = byte value here
  EXPECT_EQ(t.encode(""), Ids{});
  EXPECT_FALSE(t.eos_token_id().has_value());
}
