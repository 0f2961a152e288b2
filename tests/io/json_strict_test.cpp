// JSON parse errors of untrusted files (src/io/json_strict.hpp) never carry
// raw bytes of the file to the terminal: invalid UTF-8 and control characters
// quoted from the file (nlohmann's "last read" text, a duplicate key) are
// escaped as \xNN, and the message is valid UTF-8 (io::escape_for_terminal).
#include "io/json_strict.hpp"

#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>
#include <fstream>
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

namespace {

std::string expect_duplicate(const std::string& text, const std::string& key) {
  const std::string msg = parse_error(text);
  EXPECT_NE(msg.find("duplicate JSON key '" + key + "'"), std::string::npos) << text << "\n" << msg;
  return msg;
}

}  // namespace

TEST(JsonStrict, DuplicateKeysAreFoundAtEveryNestingLevel) {
  expect_duplicate(R"({"a": 1, "b": 2, "a": 3})", "a");                                 // top level
  expect_duplicate(R"({"a": {"x": 1, "y": {}, "x": 2}})", "x");                         // nested object
  expect_duplicate(R"({"a": {"b": {"c": {"d": 1, "d": 2}}}})", "d");                    // deeper
  expect_duplicate(R"({"a": [1, {"k": true, "k": false}]})", "k");                      // object in an array
  expect_duplicate(R"([[{"z": null}], [{"q": 1, "q": 1}]])", "q");                      // top-level array
  expect_duplicate(R"({"t": {"u": 1}, "v": [], "t": 2})", "t");                         // after a closed child
  expect_duplicate(R"({"a": {"m": 1}, "b": {"n": 1, "m": 2, "n": 3}})", "n");           // sibling objects
  // A key repeated only in different objects (siblings, parent and child) is fine.
  const auto ok = kq::io::parse_json_strict(
      R"({"a": {"a": {"a": 1}}, "b": [{"a": 1}, {"a": 2}], "c": {"a": 3}})", "config.json");
  EXPECT_EQ(ok["a"]["a"]["a"], 1);
  EXPECT_EQ(ok["b"][1]["a"], 2);
  EXPECT_EQ(ok["c"]["a"], 3);
  // A syntax error anywhere is reported as such, even after a duplicate key.
  EXPECT_NE(parse_error(R"({"a": 1, "a": 2)").find("invalid JSON"), std::string::npos);
  // Deep nesting (objects and arrays, 501 levels: within kMaxJsonDepth) does not lose a duplicate.
  std::string deep;
  for (int i = 0; i < 250; ++i) deep += "{\"o\":[";
  deep += "{\"w\":0,\"w\":1}";
  for (int i = 0; i < 250; ++i) deep += "]}";
  expect_duplicate(deep, "w");
  // 100,000 levels are refused (json_excerpt_test.cpp has the depth limit's own tests).
  std::string deeper;
  for (int i = 0; i < 50000; ++i) deeper += "{\"o\":[";
  deeper += "{\"w\":0,\"w\":1}";
  for (int i = 0; i < 50000; ++i) deeper += "]}";
  EXPECT_NE(parse_error(deeper).find("nested more than"), std::string::npos);
}

// A NUL byte ends nlohmann's input (as in a C string): "{...}\0junk" was
// accepted, everything after the NUL ignored (config.json, tokenizer.json,
// generation_config.json, ... all read through load_json_file). Any NUL is an
// error giving its offset in the file.
TEST(JsonStrict, NulByteIsRefusedWithItsOffset) {
  using namespace std::string_literals;
  EXPECT_EQ(parse_error("{\"n_embd\": 64}\0{\"junk\": "s),
            "config.json: a NUL byte at offset 14 (JSON text cannot contain one)");
  EXPECT_NE(parse_error("{\"a\": 1}\0"s).find("at offset 8 "), std::string::npos);  // a NUL alone at the end
  EXPECT_NE(parse_error("\0{\"a\": 1}"s).find("at offset 0 "), std::string::npos);
  EXPECT_NE(parse_error("{\"a\": \"x\0y\"}"s).find("at offset 8 "), std::string::npos);  // inside a string
  // The offset counts from `first_offset` (a safetensors header starts at byte 8 of its file).
  try {
    (void)kq::io::parse_json_strict("{} \0"s, "model.safetensors", 8);
    ADD_FAILURE() << "no error";
  } catch (const kq::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("model.safetensors: a NUL byte at offset 11 "), std::string::npos)
        << e.what();
  }
  // An escaped NUL (\u0000) in a string is valid JSON.
  EXPECT_EQ(kq::io::parse_json_strict(R"({"a": "x\u0000y"})", "config.json")["a"], "x\0y"s);
  // Through load_json_file: the message names the file.
  const auto file = std::filesystem::temp_directory_path() / ("kq_json_nul_" + std::to_string(::getpid()) + ".json");
  {
    std::ofstream f(file, std::ios::binary);
    f << "{\"eos_token_id\": 2}\n" << '\0' << "{\"junk\": ";
  }
  try {
    (void)kq::io::load_json_file(file);
    ADD_FAILURE() << "no error";
  } catch (const kq::FormatError& e) {
    EXPECT_EQ(std::string(e.what()), file.string() + ": a NUL byte at offset 20 (JSON text cannot contain one)");
  }
  std::filesystem::remove(file);
}

// One object with 300,000 members, each an object of its own (the shape of a
// safetensors header with 300,000 tensors). No timing assertion: the size is
// the check. nlohmann's callback parser, which parse_json_strict used before,
// scans the whole parent object at the end of every member object, so this
// took ~4.5e10 member visits (many minutes; 30,000 members already took 30 s
// to over 120 s) and CI would time out; the linear parse takes a few seconds
// at most (about 3 s CPU on the shared 2-core dev box, building the text included).
TEST(JsonStrict, LargeObjectParsesInLinearTime) {
  constexpr int kMembers = 300000;
  std::string text = "{";
  for (int i = 0; i < kMembers; ++i) {
    if (i) text += ',';
    text += "\"t" + std::to_string(i) + "\":{\"dtype\":\"F32\",\"shape\":[" + std::to_string(i) +
            "],\"data_offsets\":[0,0]}";
  }
  text += '}';
  const auto j = kq::io::parse_json_strict(text, "model.safetensors");
  ASSERT_TRUE(j.is_object());
  EXPECT_EQ(j.size(), size_t(kMembers));
  EXPECT_EQ(j["t0"]["shape"][0], 0);
  EXPECT_EQ(j["t299999"]["shape"][0], 299999);
  EXPECT_EQ(j["t123456"]["dtype"], "F32");
  // The same object with one key repeated at the very end is still rejected.
  text.back() = ',';
  text += "\"t150000\":{}}";
  expect_duplicate(text, "t150000");
}
