// JSON parse errors of untrusted files (src/io/json_strict.hpp) never carry
// raw bytes of the file to the terminal: invalid UTF-8 and control characters
// quoted from the file (nlohmann's "last read" text, a duplicate key) are
// escaped as \xNN, and the message is valid UTF-8 (io::escape_for_terminal).
#include "io/json_strict.hpp"

#include <gtest/gtest.h>

#include <string>
#include <utility>
#include <vector>

#include "io/utf8_text.hpp"
#include "kq/error.hpp"

namespace {

std::string parse_error(const std::string& text) {
  try {
    (void)kq::io::parse_json_strict(text, "config.json");
  } catch (const kq::FormatError& e) {
    return e.what();
  }
  return "(no error)";
}

/// A C0 control character, DEL, or a C1 control (U+0080..U+009F, encoded C2 80..C2 9F).
bool has_control(const std::string& s) {
  for (size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x20 || c == 0x7F) return true;
    if (c == 0xC2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) < 0xA0) return true;
  }
  return false;
}

}  // namespace

TEST(JsonStrict, ParseErrorsEscapeRawBytesOfTheFile) {
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"{\"model_type\": \"gpt2\xff\xfe\"}", "\\xFF"},  // invalid UTF-8 in a string
      {"{\"n_embd\": \xc3\x28}", "\\xC3'"},             // a lead byte without its continuation
      {"{\"n_embd\": \xe2\x82}", "\\xE2'"},             // a truncated 3-byte sequence
      {"{\"a\": 1}\x1b[2J\x9b", "invalid JSON"},        // trailing escape sequence
      {"{\"\\u001b]0;x\\u0007\": 1, \"\\u001b]0;x\\u0007\": 2}", "'\\x1B]0;x\\x07'"},  // duplicate key
      {"{\"\\u009b31m\": 1, \"\\u009b31m\": 2}", "'\\u009B31m'"},  // C1 control (8-bit CSI) in a key
  };
  for (const auto& [text, needle] : cases) {
    const std::string msg = parse_error(text);
    SCOPED_TRACE(msg);
    EXPECT_EQ(msg.rfind("config.json: ", 0), 0u);
    EXPECT_NE(msg.find(needle), std::string::npos) << needle;
    EXPECT_EQ(kq::io::find_invalid_utf8(msg), std::nullopt);
    EXPECT_FALSE(has_control(msg));
  }
}
TEST(JsonStrict, EscapingKeepsValidTextAndMarksEveryOtherByte) {
  using kq::io::escape_for_terminal;
  EXPECT_EQ(escape_for_terminal("plain ASCII, caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \\x41"),
            "plain ASCII, caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80 \\x41");
  EXPECT_EQ(escape_for_terminal(std::string("a\0b", 3)), "a\\x00b");
  EXPECT_EQ(escape_for_terminal("\x1b[31m\t\n\r\x7f"), "\\x1B[31m\\x09\\x0A\\x0D\\x7F");
  EXPECT_EQ(escape_for_terminal("\xff\xfe"), "\\xFF\\xFE");
  EXPECT_EQ(escape_for_terminal("\xc0\xaf"), "\\xC0\\xAF");           // overlong '/'
  EXPECT_EQ(escape_for_terminal("\xed\xa0\x80"), "\\xED\\xA0\\x80");  // a surrogate
  EXPECT_EQ(escape_for_terminal("\xe2\x82"), "\\xE2\\x82");           // truncated at the end
  EXPECT_EQ(escape_for_terminal("\xc2\x80\xc2\x9f\xc2\xa0"),
            "\\u0080\\u009F\xc2\xa0");  // C1 controls; NBSP kept
  // Every byte string of length 1 and 2 comes out valid UTF-8 without control characters.
  for (int a = 0; a < 256; ++a) {
    for (int b = -1; b < 256; ++b) {
      std::string s(1, char(a));
      if (b >= 0) s.push_back(char(b));
      const std::string e = escape_for_terminal(s);
      ASSERT_EQ(kq::io::find_invalid_utf8(e), std::nullopt) << a << " " << b;
      ASSERT_FALSE(has_control(e)) << a << " " << b;
    }
  }
}
