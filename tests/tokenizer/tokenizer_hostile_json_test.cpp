// Hostile JSON values in tokenizer files: error messages quote a bounded
// excerpt (io::json_excerpt), not the whole value (a multi-megabyte merges
// entry or pre_tokenizer was echoed whole, or cut in the middle of a UTF-8
// character), and deep nesting is a FormatError naming the file, not a crash.
#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "tokenizer/byte_unicode.hpp"

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

json tokenizer_json() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[kq::tok::bytes_to_symbols(std::string(1, char(b)))] = b;
  vocab["ab"] = 256;
  return json{{"version", "1.0"},
              {"normalizer", nullptr},
              {"pre_tokenizer", json{{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
              {"model", json{{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array({"a b"})}}}};
}

/// The FormatError or Unsupported message of loading DIR with tokenizer.json = `text`.
std::string load_error(const kq::testing::TempDir& d, const std::string& text) {
  std::ofstream(d.path / "tokenizer.json", std::ios::binary) << text;
  try {
    (void)kq::Tokenizer::load(d.path);
  } catch (const kq::Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "accepted";
  return {};
}

TEST(TokenizerHostileJson, MessagesQuoteABoundedExcerpt) {
  kq::testing::TempDir d;
  const std::string huge(2u << 20, 'x');
  json j = tokenizer_json();
  j["model"]["merges"] = json::array({json::array({huge, huge, huge})});  // not a pair
  std::string msg = load_error(d, j.dump());
  EXPECT_NE(msg.find("model.merges[0]"), std::string::npos) << msg.substr(0, 300);
  EXPECT_LT(msg.size(), 500u) << msg.substr(0, 500);
  j = tokenizer_json();
  j["model"]["merges"] = json::array({std::string(100, 'a') + std::string(50, ' ')});  // not "a b"
  msg = load_error(d, j.dump());
  EXPECT_LT(msg.size(), 500u) << msg;
  j = tokenizer_json();
  std::string e;  // 2-byte characters: the excerpt is never cut inside one
  for (int i = 0; i < 200; ++i) e += "\xC3\xA9";
  j["pre_tokenizer"] = json{{"type", "Metaspace"}, {"repl", e}};
  msg = load_error(d, j.dump());
  EXPECT_NE(msg.find("pre_tokenizer"), std::string::npos) << msg;
  EXPECT_FALSE(kq::io::find_invalid_utf8(msg).has_value()) << msg;
  EXPECT_LT(msg.size(), 500u) << msg;
  j = tokenizer_json();
  j["model"]["type"] = json::array({huge});
  msg = load_error(d, j.dump());
  EXPECT_LT(msg.size(), 500u) << msg.substr(0, 500);
}

TEST(TokenizerHostileJson, DeepNestingIsAFormatErrorNamingTheFile) {
  kq::testing::TempDir d;
  std::string text = tokenizer_json().dump();
  text.insert(1, "\"extra\":" + std::string(200000, '[') + std::string(200000, ']') + ",");
  const std::string msg = load_error(d, text);
  EXPECT_NE(msg.find((d.path / "tokenizer.json").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("nested more than"), std::string::npos) << msg;
}

// A UTF-8 byte-order mark before the JSON was skipped without a word (nlohmann's parser skips it); Hugging Face
// refuses it (tokenizers' serde_json: "expected value at line 1 column 1"; transformers' json.load of
// tokenizer_config.json and vocab.json: "Unexpected UTF-8 BOM"). A FormatError naming the file, as for each file.
TEST(TokenizerHostileJson, Utf8ByteOrderMarkIsAFormatErrorNamingTheFile) {
  const std::string bom = "\xEF\xBB\xBF";
  kq::testing::TempDir d;
  std::string msg = load_error(d, bom + tokenizer_json().dump());
  EXPECT_EQ(msg.rfind((d.path / "tokenizer.json").string() + ": starts with a UTF-8 byte-order mark", 0), 0u) << msg;
  std::ofstream(d.path / "tokenizer_config.json", std::ios::binary) << bom + R"({"bos_token": "ab"})";
  msg = load_error(d, tokenizer_json().dump());
  EXPECT_EQ(msg.rfind((d.path / "tokenizer_config.json").string() + ": starts with a UTF-8 byte-order mark", 0), 0u)
      << msg;
  kq::testing::TempDir g;  // vocab.json + merges.txt
  std::ofstream(g.path / "vocab.json", std::ios::binary) << bom + tokenizer_json()["model"]["vocab"].dump();
  std::ofstream(g.path / "merges.txt", std::ios::binary) << "#version: 0.2\na b\n";
  try {
    (void)kq::Tokenizer::load(g.path);
    ADD_FAILURE() << "accepted";
  } catch (const kq::FormatError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind((g.path / "vocab.json").string() + ": starts with a UTF-8 byte-order mark", 0), 0u) << m;
  }
  // The same bytes later in the file are the character U+FEFF, as in any JSON string.
  json j = tokenizer_json();
  j["added_tokens"] = json::array({json{{"id", 257}, {"content", bom}, {"special", true}}});
  std::ofstream(d.path / "tokenizer_config.json", std::ios::binary) << R"({"bos_token": "ab"})";
  std::ofstream(d.path / "tokenizer.json", std::ios::binary) << j.dump();
  EXPECT_EQ(kq::Tokenizer::load(d.path).vocab_size(), 258);
}

// Tester finding: a UTF-8 byte-order mark before merges.txt gave "merge 1 ('\ufeff#version: 0.2') ... not in the
// vocabulary". Hugging Face's slow tokenizer reads it as utf-8 and skips line 1, so before "#version" it changes
// nothing and is skipped with that line; before a merge (which Hugging Face would drop) it is refused, naming it.
TEST(TokenizerHostileJson, Utf8ByteOrderMarkBeforeMergesTxt) {
  const std::string bom = "\xEF\xBB\xBF";
  kq::testing::TempDir g;
  std::ofstream(g.path / "vocab.json", std::ios::binary) << tokenizer_json()["model"]["vocab"].dump();
  std::ofstream(g.path / "merges.txt", std::ios::binary) << bom + "#version: 0.2\na b\n";
  const kq::Tokenizer t = kq::Tokenizer::load(g.path);
  EXPECT_EQ(t.encode("ab"), std::vector<int32_t>{256});
  std::ofstream(g.path / "merges.txt", std::ios::binary) << bom + "a b\n";
  try {
    (void)kq::Tokenizer::load(g.path);
    ADD_FAILURE() << "accepted";
  } catch (const kq::FormatError& e) {
    const std::string m = e.what();
    EXPECT_EQ(m.rfind((g.path / "merges.txt").string() + ": starts with a UTF-8 byte-order mark (bytes EF BB BF) "
                                                          "before a line 1 'a b' that is not the \"#version\" line",
                      0),
              0u)
        << m;
  }
}

}  // namespace
