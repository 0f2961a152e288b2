// Hostile JSON values in error messages and deep nesting: io::json_excerpt is
// bounded in length and depth, parse_json_strict rejects nesting deeper than
// kMaxJsonDepth, and config.json errors neither crash nor echo whole values
// (fresh-user finding: a 100,000-deep "n_embd" made `kq eval` die of SIGSEGV
// in the error message's dump(); a multi-MB value was echoed whole).
#include <gtest/gtest.h>

#include <string>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "io/io_test_util.hpp"
#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kq/config.hpp"
#include "kq/error.hpp"

namespace kq {
namespace {

using nlohmann::json;

/// A value nested `depth` arrays deep around the integer 1, built without
/// recursion (json's destructor is iterative, so dropping it is safe too).
json deep_array(int depth) {
  json v = 1;
  for (int i = 0; i < depth; ++i) {
    json a = json::array();
    a.push_back(std::move(v));
    v = std::move(a);
  }
  return v;
}

std::string nested_text(size_t depth) { return std::string(depth, '[') + "1" + std::string(depth, ']'); }


TEST(JsonExcerpt, ShortValuesAreTheirJsonText) {
  for (const char* text : {"1", "-2.5", "true", "null", R"("abc")", "[1,2,3]", R"({"a":[1,{"b":null}]})", "[]",
                           "{}", R"([[[]]])"}) {
    const json v = json::parse(text);
    EXPECT_EQ(io::json_excerpt(v), v.dump()) << text;
  }
}

TEST(JsonExcerpt, LongValuesAreCutWithAnEllipsis) {
  json big = json::array();
  for (int i = 0; i < 1000000; ++i) big.push_back(i);  // dump() is about 6.9 MB
  std::string s = io::json_excerpt(big);
  EXPECT_EQ(s.size(), 83u) << s;
  EXPECT_EQ(s.substr(0, 10), "[0,1,2,3,4");
  EXPECT_EQ(s.substr(80), "...");
  s = io::json_excerpt(json(std::string(5u << 20, 'x')), 20);
  EXPECT_EQ(s, "\"" + std::string(19, 'x') + "...");
  // A cut never splits a UTF-8 character: "é" is 2 bytes, 40 of them are 80 bytes + 2 quotes.
  std::string e;
  for (int i = 0; i < 50; ++i) e += "\xC3\xA9";
  s = io::json_excerpt(json(e));
  EXPECT_FALSE(io::find_invalid_utf8(s).has_value()) << s;
  EXPECT_EQ(s, "\"" + e.substr(0, 78) + "...");  // 1 + 39 characters (78 bytes) + "..."
  // Exactly max_chars characters are not cut.
  EXPECT_EQ(io::json_excerpt(json(std::string(8, 'y')), 10), "\"yyyyyyyy\"");
}

TEST(JsonExcerpt, DeepContainersAreSummarizedWithoutRecursion) {
  const json deep = deep_array(200000);  // dump() of this overflows an 8 MB stack
  EXPECT_EQ(io::json_excerpt(deep), "[[[<array of 1 element>]]]");
  EXPECT_EQ(io::json_excerpt(json::parse(R"({"a":{"b":{"c":{"d":1,"e":2}}}})")),
            R"({"a":{"b":{"c":<object of 2 members>}}})");
  EXPECT_EQ(io::json_excerpt(json::parse("[[[[]]]]")), "[[[[]]]]");  // empty ones are shown as such
}

TEST(JsonExcerpt, ControlCharactersAndInvalidUtf8AreEscaped) {
  const std::string s = io::json_excerpt(json(std::string("a\x1b[2Jb\xC2\x9B" "c")));
  EXPECT_EQ(s.find('\x1b'), std::string::npos) << s;
  EXPECT_EQ(s.find("\xC2\x9B"), std::string::npos) << s;  // C1 CSI
  EXPECT_NE(s.find("b"), std::string::npos) << s;
  // A string cut inside a UTF-8 sequence by nlohmann's own rules (invalid) does not throw.
  EXPECT_NO_THROW((void)io::json_excerpt(json(std::string("\xFF\xFE"))));
}

TEST(JsonStrict, NestingDeeperThanTheLimitIsAFormatErrorNamingTheSource) {
  const size_t limit = io::kMaxJsonDepth;
  EXPECT_EQ(io::parse_json_strict(nested_text(limit), "x.json").dump(), nested_text(limit));
  for (const std::string& text : {nested_text(limit + 1), nested_text(200000), "{\"a\":" + std::string(200000, '['),
                                  std::string(100000, '[') /* unterminated */}) {
    const std::string msg = testing::error_of<FormatError>([&] { (void)io::parse_json_strict(text, "x.json"); });
    EXPECT_NE(msg.find("x.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("nested more than 512 levels"), std::string::npos) << msg;
  }
}

// The finding itself: config.json with a 200,000-deep value for a checked key.
TEST(Config, DeeplyNestedValueIsAFormatErrorNotACrash) {
  KQ_REQUIRE_SHARED("models/gpt2-tiny");
  const json base = io::load_json_file(testing::shared_dir() / "models/gpt2-tiny/config.json");
  for (const char* key : {"n_embd", "model_type", "layer_norm_epsilon", "tie_word_embeddings", "eos_token_id"}) {
    testing::TempDir d;
    json j = base;
    j.erase(key);
    const std::string text = "{\"" + std::string(key) + "\":" + nested_text(200000) + "," + j.dump().substr(1);
    testing::write_bytes(d.path / "config.json", text);
    const std::string msg = testing::error_of<FormatError>([&] { (void)load_model_config(d.path); });
    EXPECT_NE(msg.find((d.path / "config.json").string()), std::string::npos) << key << ": " << msg;
    EXPECT_LT(msg.size(), 400u) << key << ": " << msg.substr(0, 400);
  }
}

// Values built in memory (parse_model_config takes a json) are not bounded by
// the parser: every message renders them with json_excerpt.
TEST(Config, ErrorMessagesDoNotEchoHugeOrDeepValues) {
  const json gpt2 = json::parse(R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 128, "n_head": 4,
                                   "vocab_size": 100, "n_positions": 64})");
  const json llama = json::parse(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128,
      "num_hidden_layers": 2, "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 64})");
  struct Case {
    const json* base;
    const char* key;
  };
  for (const Case c : {Case{&gpt2, "n_embd"}, Case{&gpt2, "layer_norm_epsilon"}, Case{&gpt2, "tie_word_embeddings"},
                       Case{&gpt2, "activation_function"}, Case{&llama, "rms_norm_eps"},
                       Case{&llama, "rope_scaling"}, Case{&llama, "hidden_size"}}) {
    for (int variant = 0; variant < 2; ++variant) {
      json j = *c.base;
      j[c.key] = variant == 0 ? deep_array(200000) : json(std::string(4u << 20, '7'));
      const std::string msg = testing::error_of<FormatError>([&] { (void)parse_model_config(j, "m/config.json"); });
      EXPECT_NE(msg.find("m/config.json"), std::string::npos) << c.key << ": " << msg.substr(0, 300);
      EXPECT_NE(msg.find(c.key), std::string::npos) << c.key << ": " << msg.substr(0, 300);
      EXPECT_LT(msg.size(), 400u) << c.key << ": " << msg.substr(0, 400);
    }
  }
}

// Strings that kq names in a message (an unsupported model_type, activation or
// RoPE type) are cut too.
TEST(Config, UnsupportedNamesAreCutInMessages) {
  const std::string huge(4u << 20, 'q');
  json j = json::parse(R"({"model_type": "gpt2", "n_layer": 2, "n_embd": 128, "n_head": 4, "vocab_size": 100,
                           "n_positions": 64})");
  for (const char* key : {"activation_function", "model_type"}) {
    json k = j;
    k[key] = huge;
    const std::string msg = testing::error_of<FormatError>([&] { (void)parse_model_config(k, "m/config.json"); });
    EXPECT_NE(msg.find("qqq..."), std::string::npos) << msg.substr(0, 300);
    EXPECT_LT(msg.size(), 400u) << msg.substr(0, 400);
  }
  j = json::parse(R"({"model_type": "llama", "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                      "num_attention_heads": 4, "vocab_size": 100, "max_position_embeddings": 64})");
  j["hidden_act"] = huge;
  EXPECT_LT(testing::error_of<FormatError>([&] { (void)parse_model_config(j, "m/config.json"); }).size(), 400u);
  j["hidden_act"] = "silu";
  j["rope_scaling"] = {{"rope_type", huge}};
  EXPECT_LT(testing::error_of<FormatError>([&] { (void)parse_model_config(j, "m/config.json"); }).size(), 400u);
}

TEST(JsonText, InvalidUtf8IsReplacedNotThrown) {
  // A file name in another encoding, from the command line (round-12 finding: dump() threw type_error.316).
  const json j = {{"text", "bad\xffname.txt"}, {"ok", "caf\xc3\xa9"}, {"n", 2}};
  EXPECT_THROW((void)j.dump(), json::type_error);
  const std::string t = io::json_text(j);
  const json back = json::parse(t);  // valid UTF-8 JSON
  EXPECT_EQ(back["text"], "bad\xef\xbf\xbdname.txt");  // U+FFFD for the invalid byte
  EXPECT_EQ(back["ok"], "caf\xc3\xa9");
  EXPECT_EQ(back["n"], 2);
  const json plain = {{"a", 1}, {"b", "x"}};
  EXPECT_EQ(io::json_text(plain, 2), plain.dump(2));  // otherwise exactly dump(indent)
}

}  // namespace
}  // namespace kq
