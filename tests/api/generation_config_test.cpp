// EOS token ids for generation: generation_config.json over config.json (as in
// Hugging Face transformers), an int or a list, and clear errors for bad values.
#include "api/generation_config.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"

namespace kq {
namespace {

using testing::TempDir;

using kq::testing::write_text;

TEST(GenerationConfig, GenerationConfigTakesPrecedenceOverConfig) {
  TempDir d;
  write_text(d.path / "config.json", R"({"eos_token_id": 7})");
  EosTokens e = load_eos_token_ids(d.path, 100);
  EXPECT_EQ(e.ids, std::vector<int32_t>{7});
  EXPECT_EQ(e.source, (d.path / "config.json").string());
  write_text(d.path / "generation_config.json", R"({"eos_token_id": [5, 9, 5]})");
  e = load_eos_token_ids(d.path, 100);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{5, 9}));  // a list, duplicates once
  EXPECT_EQ(e.source, (d.path / "generation_config.json").string());
  // generation_config.json without the key (or with null) leaves config.json's.
  write_text(d.path / "generation_config.json", R"({"bos_token_id": 1, "eos_token_id": null})");
  EXPECT_EQ(load_eos_token_ids(d.path, 100).ids, std::vector<int32_t>{7});
  // An empty list sets no EOS token (it does not fall back, as in transformers), with a warning.
  write_text(d.path / "generation_config.json", R"({"eos_token_id": []})");
  std::vector<std::string> warnings;
  const WarningHandler old = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  e = load_eos_token_ids(d.path, 100);
  set_warning_handler(old);
  EXPECT_TRUE(e.ids.empty());
  EXPECT_EQ(e.source, (d.path / "generation_config.json").string());
  ASSERT_EQ(warnings.size(), 1u);  // fresh-user finding: it used to be silent
  EXPECT_NE(warnings[0].find("generation_config.json: eos_token_id is an empty list"), std::string::npos)
      << warnings[0];
}

// Tester finding: a UTF-8 byte-order mark before generation_config.json / config.json was accepted without a word,
// while transformers' json.load refuses it; refused naming the file, as tokenizer.json's is.
TEST(GenerationConfig, Utf8ByteOrderMarkIsRefusedNamingTheFile) {
  for (const char* name : {"generation_config.json", "config.json"}) {
    TempDir d;
    write_text(d.path / name, "\xEF\xBB\xBF" R"({"eos_token_id": 7})");
    try {
      (void)load_eos_token_ids(d.path, 100);
      ADD_FAILURE() << name << " accepted";
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind((d.path / name).string() + ": starts with a UTF-8 byte-order mark (bytes EF BB BF)", 0), 0u)
          << m;
    }
  }
}

TEST(GenerationConfig, NeitherFileSetsIt) {
  TempDir d;
  EXPECT_TRUE(load_eos_token_ids(d.path, 100).source.empty());
  write_text(d.path / "config.json", R"({"vocab_size": 100})");
  const EosTokens e = load_eos_token_ids(d.path, 100);
  EXPECT_TRUE(e.ids.empty());
  EXPECT_TRUE(e.source.empty());
}

TEST(GenerationConfig, ShippedDemoModel) {
  const auto dir = kq::testing::demo_model();
  const EosTokens e = load_eos_token_ids(dir, 8192);
  EXPECT_EQ(e.ids, std::vector<int32_t>{0});  // <|endoftext|>, both files
  EXPECT_EQ(e.source, (dir / "generation_config.json").string());
}

TEST(GenerationConfig, BadValuesAreFormatErrorsNamingFileAndKey) {
  for (const char* bad : {R"("2")", "1.5", "-1", "true", "[1, \"x\"]", "[[1]]", "4294967296", "{}"}) {
    TempDir d;
    write_text(d.path / "generation_config.json", std::string(R"({"eos_token_id": )") + bad + "}");
    try {
      (void)load_eos_token_ids(d.path, 100);
      ADD_FAILURE() << "accepted eos_token_id " << bad;
    } catch (const FormatError& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find("generation_config.json"), std::string::npos) << msg;
      EXPECT_NE(msg.find("eos_token_id"), std::string::npos) << msg;
    }
  }
  TempDir d;
  write_text(d.path / "config.json", R"({"eos_token_id": 1, "eos_token_id": 2})");  // duplicate key
  EXPECT_THROW((void)load_eos_token_ids(d.path, 100), FormatError);
  write_text(d.path / "config.json", "[1]");
  EXPECT_THROW((void)load_eos_token_ids(d.path, 100), FormatError);
}

TEST(GenerationConfig, IdOutsideTheVocabularyIsDroppedWithAWarning) {
  TempDir d;
  write_text(d.path / "config.json", R"({"eos_token_id": [3, 100, 250]})");
  std::vector<std::string> warnings;
  const WarningHandler old = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  const EosTokens e = load_eos_token_ids(d.path, 100);
  set_warning_handler(old);
  EXPECT_EQ(e.ids, std::vector<int32_t>{3});
  ASSERT_EQ(warnings.size(), 2u);
  EXPECT_NE(warnings[0].find("eos_token_id 100"), std::string::npos) << warnings[0];
  EXPECT_NE(warnings[0].find("config.json"), std::string::npos) << warnings[0];
}

// Fresh-user finding: a list whose ids are all outside the vocabulary
// disabled EOS; the file is passed over (with warnings) for the next source.
TEST(GenerationConfig, AllIdsOutsideTheVocabularyFallBackToTheNextSource) {
  TempDir d;
  write_text(d.path / "config.json", R"({"eos_token_id": 7})");
  write_text(d.path / "generation_config.json", R"({"eos_token_id": [100, 250]})");
  std::vector<std::string> warnings;
  const WarningHandler old = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  EosTokens e = load_eos_token_ids(d.path, 100);
  EXPECT_EQ(e.ids, std::vector<int32_t>{7});
  EXPECT_EQ(e.source, (d.path / "config.json").string());
  ASSERT_EQ(warnings.size(), 3u);  // 100, 250, and the fallback
  EXPECT_NE(warnings[2].find("generation_config.json: no eos_token_id is inside the vocabulary"), std::string::npos)
      << warnings[2];
  // config.json's ids all outside too: no source (the tokenizer's EOS token is used).
  write_text(d.path / "config.json", R"({"eos_token_id": 100})");
  warnings.clear();
  e = load_eos_token_ids(d.path, 100);
  set_warning_handler(old);
  EXPECT_TRUE(e.ids.empty());
  EXPECT_TRUE(e.source.empty());
  EXPECT_EQ(warnings.size(), 5u);  // generation_config.json: 100, 250, fallback; config.json: 100, fallback
}

// Fresh-user finding: a dangling symbolic link generation_config.json was
// taken for an absent file (config.json's EOS was used silently).
TEST(GenerationConfig, DanglingLinkIsAFormatErrorNamingTheFile) {
  TempDir d;
  write_text(d.path / "config.json", R"({"eos_token_id": 7})");
  const auto gen = d.path / "generation_config.json";
  std::filesystem::create_symlink(d.path / "no_such_file.json", gen);
  try {
    (void)load_eos_token_ids(d.path, 100);
    ADD_FAILURE() << "a dangling link was taken for an absent file";
  } catch (const FormatError& e) {
    const std::string msg = e.what();
    EXPECT_NE(msg.find(gen.string()), std::string::npos) << msg;
    EXPECT_NE(msg.find("no_such_file.json"), std::string::npos) << msg;
    EXPECT_NE(msg.find("does not exist"), std::string::npos) << msg;
  }
  // A link loop is an error too; a link to a real file is read.
  std::filesystem::remove(gen);
  std::filesystem::create_symlink(gen, gen);
  EXPECT_THROW((void)load_eos_token_ids(d.path, 100), FormatError);
  std::filesystem::remove(gen);
  write_text(d.path / "real.json", R"({"eos_token_id": 9})");
  std::filesystem::create_symlink(d.path / "real.json", gen);
  EXPECT_EQ(load_eos_token_ids(d.path, 100).ids, std::vector<int32_t>{9});
}

// The sampling keys kq generate applies (do_sample, temperature, top_k, top_p, repetition_penalty,
// max_new_tokens): each read, absent / null ones empty, bad types and ranges refused naming file and key.
TEST(GenerationDefaults, ReadsEachKey) {
  TempDir d;
  GenerationDefaults g = load_generation_defaults(d.path);  // no file
  EXPECT_TRUE(g.source.empty());
  EXPECT_FALSE(g.do_sample || g.temperature || g.top_k || g.top_p || g.repetition_penalty || g.max_new_tokens);
  write_text(d.path / "generation_config.json",
             R"({"do_sample": true, "temperature": 0.7, "top_k": 40, "top_p": 0.95, "repetition_penalty": 1.3,
                 "max_new_tokens": 256, "eos_token_id": 2})");
  g = load_generation_defaults(d.path);
  EXPECT_EQ(g.source, (d.path / "generation_config.json").string());
  EXPECT_EQ(g.do_sample, true);
  EXPECT_EQ(g.temperature, 0.7f);
  EXPECT_EQ(g.top_k, 40);
  EXPECT_EQ(g.top_p, 0.95f);
  EXPECT_EQ(g.repetition_penalty, 1.3f);
  EXPECT_EQ(g.max_new_tokens, 256);
  // Integers where floats go, the range ends, and null (transformers' None) = absent.
  write_text(d.path / "generation_config.json",
             R"({"do_sample": false, "temperature": 0, "top_k": 0, "top_p": 1, "repetition_penalty": 2,
                 "max_new_tokens": null})");
  g = load_generation_defaults(d.path);
  EXPECT_EQ(g.do_sample, false);
  EXPECT_EQ(g.temperature, 0.0f);
  EXPECT_EQ(g.top_k, 0);
  EXPECT_EQ(g.top_p, 1.0f);
  EXPECT_EQ(g.repetition_penalty, 2.0f);
  EXPECT_FALSE(g.max_new_tokens);
  // The shipped demo model sets none of them.
  g = load_generation_defaults(kq::testing::demo_model());
  EXPECT_FALSE(g.source.empty());
  EXPECT_FALSE(g.do_sample || g.temperature || g.top_k || g.top_p || g.repetition_penalty || g.max_new_tokens);
}

TEST(GenerationDefaults, BadValuesAreFormatErrorsNamingFileAndKey) {
  const std::vector<std::pair<const char*, const char*>> cases = {
      {R"({"do_sample": 1})", "do_sample"},
      {R"({"do_sample": "true"})", "do_sample"},
      {R"({"temperature": -0.1})", "temperature"},
      {R"({"temperature": "0.7"})", "temperature"},
      {R"({"temperature": 1e300})", "temperature"},
      {R"({"top_k": -1})", "top_k"},
      {R"({"top_k": 50.0})", "top_k"},
      {R"({"top_k": 3000000000})", "top_k"},
      {R"({"top_p": 0})", "top_p"},
      {R"({"top_p": 1.01})", "top_p"},
      {R"({"top_p": [0.9]})", "top_p"},
      {R"({"repetition_penalty": 0})", "repetition_penalty"},
      {R"({"repetition_penalty": -1.2})", "repetition_penalty"},
      {R"({"max_new_tokens": -1})", "max_new_tokens"},
      {R"({"max_new_tokens": 2000000000})", "max_new_tokens"},
      {R"({"max_new_tokens": true})", "max_new_tokens"},
      {R"([1, 2])", "expected a JSON object"},
  };
  for (const auto& [text, key] : cases) {
    TempDir d;
    write_text(d.path / "generation_config.json", text);
    try {
      (void)load_generation_defaults(d.path);
      ADD_FAILURE() << text << " accepted";
    } catch (const FormatError& e) {
      const std::string m = e.what();
      EXPECT_EQ(m.rfind((d.path / "generation_config.json").string() + ": " + key, 0), 0u) << text << ": " << m;
    }
  }
}

}  // namespace
}  // namespace kq
