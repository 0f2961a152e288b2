// EOS token ids for generation: generation_config.json over config.json (as in
// Hugging Face transformers), an int or a list, and clear errors for bad values.
#include "api/generation_config.hpp"

#include <gtest/gtest.h>

#include <fstream>
#include <string>
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

}  // namespace
}  // namespace kq
