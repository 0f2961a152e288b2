// UTF-8 validation of user text (src/io/utf8_text.hpp) against a reference
// built from the definition: valid UTF-8 is a concatenation of the encodings
// of Unicode scalar values (U+0000..U+10FFFF without the surrogates), RFC 3629.
#include "io/utf8_text.hpp"

#include <fmt/format.h>
#include <gtest/gtest.h>

#include <fstream>
#include <ios>
#include <string>
#include <unordered_set>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"

namespace {

std::string encode(char32_t cp) {  // RFC 3629 §3
  std::string s;
  if (cp < 0x80) {
    s += char(cp);
  } else if (cp < 0x800) {
    s += char(0xC0 | (cp >> 6));
    s += char(0x80 | (cp & 0x3F));
  } else if (cp < 0x10000) {
    s += char(0xE0 | (cp >> 12));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  } else {
    s += char(0xF0 | (cp >> 18));
    s += char(0x80 | ((cp >> 12) & 0x3F));
    s += char(0x80 | ((cp >> 6) & 0x3F));
    s += char(0x80 | (cp & 0x3F));
  }
  return s;
}

const std::unordered_set<std::string>& all_scalar_encodings() {
  static const auto* set = [] {
    auto* s = new std::unordered_set<std::string>;
    s->reserve(1200000);
    for (char32_t cp = 0; cp <= 0x10FFFF; ++cp)
      if (cp < 0xD800 || cp > 0xDFFF) s->insert(encode(cp));
    return s;
  }();
  return *set;
}

/// Offset of the first byte where no scalar encoding starts (UTF-8 is prefix-free, so greedy parsing is
/// exact).
std::optional<size_t> reference_invalid(const std::string& s) {
  const auto& enc = all_scalar_encodings();
  size_t i = 0;
  while (i < s.size()) {
    size_t len = 0;
    for (size_t l = 1; l <= 4 && i + l <= s.size() && !len; ++l)
      if (enc.count(s.substr(i, l))) len = l;
    if (!len) return i;
    i += len;
  }
  return std::nullopt;
}

}  // namespace

TEST(Utf8Text, EveryScalarValueIsValidAndEverySurrogateInvalid) {
  for (char32_t cp = 0; cp <= 0x10FFFF; ++cp) {
    const std::string s = encode(cp);
    const bool surrogate = cp >= 0xD800 && cp <= 0xDFFF;
    ASSERT_EQ(kq::io::find_invalid_utf8(s).has_value(), surrogate) << "U+" << std::hex << uint32_t(cp);
  }
}

TEST(Utf8Text, MatchesTheDefinitionOnAllShortStringsOfBoundaryBytes) {
  // Every string of 1..4 bytes drawn from the bytes where the rules change.
  const unsigned char bytes[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F, 0xA0, 0xBF, 0xC0, 0xC1, 0xC2, 0xDF,
                                 0xE0, 0xE1, 0xEC, 0xED, 0xEE, 0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xFF};
  const size_t nb = sizeof(bytes);
  size_t checked = 0, invalid = 0;
  for (size_t len = 1; len <= 4; ++len) {
    size_t total = 1;
    for (size_t k = 0; k < len; ++k) total *= nb;
    for (size_t idx = 0; idx < total; ++idx) {
      std::string s;
      for (size_t k = 0, r = idx; k < len; ++k, r /= nb) s += char(bytes[r % nb]);
      const auto want = reference_invalid(s);
      ASSERT_EQ(kq::io::find_invalid_utf8(s), want) << "len " << len << " idx " << idx;
      ++checked;
      invalid += want.has_value();
    }
  }
  EXPECT_GT(invalid, 0u);
  EXPECT_LT(invalid, checked);
}

TEST(Utf8Text, ErrorNamesSourceOffsetLineAndColumn) {
  const std::string text = "first line\nsecond caf\xE9 line\n";  // Latin-1 e-acute
  try {
    kq::io::check_utf8(text, "notes.txt");
    FAIL() << "no error";
  } catch (const kq::FormatError& e) {
    const std::string m = e.what();
    EXPECT_NE(m.find("notes.txt"), std::string::npos) << m;
    EXPECT_NE(m.find("byte offset 21"), std::string::npos) << m;
    EXPECT_NE(m.find("line 2, column 11"), std::string::npos) << m;
    EXPECT_NE(m.find("0xE9"), std::string::npos) << m;
  }
  EXPECT_NO_THROW(kq::io::check_utf8("caf\xC3\xA9 \xF0\x9F\x98\x80", "ok"));
}

// A byte order mark at the start is not a column (tester round 23: "\xEF\xBB\xBFab\xE9" said column 4, editors
// show the 0xE9 at column 3); the byte offset still counts its 3 bytes. Elsewhere U+FEFF is a character.
TEST(Utf8Text, ColumnsDoNotCountALeadingByteOrderMark) {
  const auto message = [](const std::string& text) {
    try {
      kq::io::check_utf8(text, "t.txt");
    } catch (const kq::FormatError& e) {
      return std::string(e.what());
    }
    return std::string("no error");
  };
  const std::string bom = "\xEF\xBB\xBF";
  EXPECT_TRUE(message(bom + "ab\xE9").starts_with("t.txt: invalid UTF-8 at byte offset 5 (line 1, column 3)"))
      << message(bom + "ab\xE9");
  EXPECT_TRUE(message("ab\xE9").starts_with("t.txt: invalid UTF-8 at byte offset 2 (line 1, column 3)"));
  // A second line's U+FEFF is column 1 of it, as one after "x".
  const std::string later = message(bom + "a\n" + bom + "b\xE9");
  EXPECT_TRUE(kq::testing::has(later, "(line 2, column 3)")) << later;
  const std::string after_x = message("x" + bom + "b\xE9");
  EXPECT_TRUE(kq::testing::has(after_x, "(line 1, column 4)")) << after_x;
}

TEST(Utf8Text, ReadFileChecksTheEncoding) {
  kq::testing::TempDir tmp;
  const auto good = tmp.path / "good.txt", bad = tmp.path / "bad.txt";
  std::ofstream(good, std::ios::binary) << "\xEF\xBB\xBFhello \xE2\x82\xAC\n";  // BOM is valid UTF-8
  std::ofstream(bad, std::ios::binary) << "\xFF\xFEh\0i";                       // UTF-16 LE BOM
  EXPECT_EQ(kq::io::read_utf8_text_file(good, 1 << 20), "\xEF\xBB\xBFhello \xE2\x82\xAC\n");
  try {
    kq::io::read_utf8_text_file(bad, 1 << 20);
    FAIL() << "no error";
  } catch (const kq::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find(bad.string() + ": invalid UTF-8 at byte offset 0"),
              std::string::npos)
        << e.what();
  }
}

// Tester: U+202E (RIGHT-TO-LEFT OVERRIDE) in a tensor name was printed raw (the rest of the line read backwards);
// the bidirectional controls and the other invisible format characters are escaped as \uNNNN, visible text kept.
TEST(Utf8Text, EscapingMarksBidiControlsAndInvisibleFormatCharacters) {
  using kq::io::escape_for_terminal;
  EXPECT_EQ(escape_for_terminal("a\u202Eb"), "a\\u202Eb");
  for (const char32_t cp : {0x202A, 0x202B, 0x202C, 0x202D, 0x202E, 0x2066, 0x2067, 0x2068, 0x2069, 0x200B, 0x200E,
                            0x200F, 0x061C, 0x2060, 0xFEFF, 0x00AD}) {
    const std::string e = escape_for_terminal(std::string("x").append(encode(cp)).append("y"));
    EXPECT_EQ(e, fmt::format("x\\u{:04X}y", uint32_t(cp))) << std::hex << uint32_t(cp);
  }
  EXPECT_EQ(escape_for_terminal(encode(0xE0041)), "\\U000E0041");  // a tag character
  // Visible text, in any script, is kept; escaping twice changes nothing more.
  const std::string visible = "caf\u00E9 \u05E9\u05DC\u05D5\u05DD \u0645\u0631\u062D\u0628\u0627 \u20AC \U0001F600";
  EXPECT_EQ(escape_for_terminal(visible), visible);
  EXPECT_EQ(escape_for_terminal(escape_for_terminal("a\u2067b")), escape_for_terminal("a\u2067b"));
}

// Tester: a 100,000-character tensor name made a 100 KB warning line. name_excerpt keeps 200 characters (whole
// ones: a multi-byte character is never cut) and says how long the name is.
TEST(Utf8Text, NameExcerptBoundsTheLength) {
  using kq::io::name_excerpt;
  EXPECT_EQ(name_excerpt("model.embed_tokens.weight"), "model.embed_tokens.weight");
  EXPECT_EQ(name_excerpt(std::string(200, 'a')), std::string(200, 'a'));
  EXPECT_EQ(name_excerpt(std::string(100000, 'a')), std::string(200, 'a') + "\u2026 (100000 characters)");
  std::string euros;
  for (int i = 0; i < 300; ++i) euros += "\u20AC";
  std::string kept;
  for (int i = 0; i < 200; ++i) kept += "\u20AC";
  EXPECT_EQ(name_excerpt(euros), kept + "\u2026 (300 characters)");
  EXPECT_EQ(name_excerpt("\u202E" + std::string(300, 'b'), 3), "\\u202Ebb\u2026 (301 characters)");
}

// A whole message is cut in the middle past head + tail characters, saying how much was left out.
TEST(Utf8Text, MessageExcerptKeepsTheStartAndTheEnd) {
  using kq::io::message_excerpt;
  EXPECT_EQ(message_excerpt("short \x1b message"), "short \\x1B message");
  const std::string m = "m: tensor '" + std::string(100000, 'x') + "' is not used";
  const std::string e = message_excerpt(m);
  EXPECT_LT(e.size(), 2100u);
  EXPECT_TRUE(e.starts_with("m: tensor 'xxx")) << e.substr(0, 40);
  EXPECT_TRUE(e.ends_with("xxx' is not used")) << e.substr(e.size() - 40);
  EXPECT_NE(e.find(fmt::format(" \u2026 ({} of its {} characters left out) \u2026 ", m.size() - 2000, m.size())),
            std::string::npos);
}

