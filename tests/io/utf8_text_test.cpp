// UTF-8 validation of user text (src/io/utf8_text.hpp) against a reference
// built from the definition: valid UTF-8 is a concatenation of the encodings
// of Unicode scalar values (U+0000..U+10FFFF without the surrogates), RFC 3629.
#include "io/utf8_text.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <unordered_set>

#include "common/test_data.hpp"
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
