// Which files Tokenizer::load uses when a folder has both tokenizer.json and
// vocab.json + merges.txt: tokenizer.json when we support it (as transformers'
// AutoTokenizer prefers the fast tokenizer), else the pair; source() says which.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "common/test_data.hpp"
#include "kq/error.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"

using kq::Tokenizer;
using json = nlohmann::json;
namespace fs = std::filesystem;

namespace {

fs::path demo_dir() { return kq::testing::demo_model(); }

std::string slurp(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

/// A copy of the demo model's tokenizer files in `dir`, tokenizer.json as `tj`.
void write_tokenizer_folder(const fs::path& dir, const json& tj) {
  fs::create_directories(dir);
  for (const char* f : {"vocab.json", "merges.txt"}) fs::copy_file(demo_dir() / f, dir / f);
  std::ofstream(dir / "tokenizer.json", std::ios::binary) << tj.dump();
}

}  // namespace

TEST(TokenizerChoice, DemoModelUsesTokenizerJsonAndBothRoutesAgree) {
  const Tokenizer t = Tokenizer::load(demo_dir());
  EXPECT_EQ(t.source(), "tokenizer.json");
  const Tokenizer pair = Tokenizer::from_files(demo_dir() / "vocab.json", demo_dir() / "merges.txt");
  EXPECT_EQ(pair.source(), "vocab.json + merges.txt");
  // The two files describe the same tokenizer: same ids on the demo text.
  const std::string text = slurp(demo_dir() / "demo-eval.txt");
  ASSERT_GT(text.size(), 1000u);
  EXPECT_EQ(t.encode(text), pair.encode(text));
  EXPECT_EQ(t.num_merges(), pair.num_merges());
  EXPECT_EQ(t.eos_token_id(), pair.eos_token_id());
}

TEST(TokenizerChoice, TokenizerJsonWinsWhenTheFilesDiffer) {
  kq::testing::TempDir tmp;
  json tj = json::parse(slurp(demo_dir() / "tokenizer.json"));
  auto& merges = tj["model"]["merges"];
  ASSERT_GT(merges.size(), 10u);
  for (int i = 0; i < 10; ++i) merges.erase(merges.size() - 1);  // drop the 10 lowest-priority merges
  write_tokenizer_folder(tmp.path, tj);
  const Tokenizer t = Tokenizer::load(tmp.path);
  EXPECT_EQ(t.source(), "tokenizer.json");
  EXPECT_EQ(t.num_merges(), Tokenizer::load(demo_dir()).num_merges() - 10);
}

TEST(TokenizerChoice, UnsupportedTokenizerJsonFallsBackToVocabAndMerges) {
  kq::testing::TempDir tmp;
  json tj = json::parse(slurp(demo_dir() / "tokenizer.json"));
  tj["normalizer"] = json{{"type", "BertNormalizer"}};
  write_tokenizer_folder(tmp.path, tj);
  const Tokenizer t = Tokenizer::load(tmp.path);
  EXPECT_NE(t.source().find("vocab.json + merges.txt (tokenizer.json not used:"), std::string::npos)
      << t.source();
  EXPECT_NE(t.source().find("normalizer"), std::string::npos) << t.source();
  EXPECT_EQ(t.encode("Hello world"), Tokenizer::load(demo_dir()).encode("Hello world"));
  // Without the pair there is nothing to fall back to: the Unsupported error stands.
  fs::remove(tmp.path / "vocab.json");
  EXPECT_THROW(Tokenizer::load(tmp.path), kq::Unsupported);
}

// New-user finding: the fallback was said only in source(), which kq eval and
// kq bench print but kq generate and kq quantize do not: a tokenizer other
// than the folder's tokenizer.json ran without a word. Tokenizer::load warns,
// once per load, naming tokenizer.json, why it is not used and what is.
TEST(TokenizerChoice, FallbackFromAnUnsupportedTokenizerJsonIsAWarning) {
  kq::testing::TempDir tmp;
  json tj = json::parse(slurp(demo_dir() / "tokenizer.json"));
  tj["normalizer"] = json{{"type", "Lowercase"}};
  write_tokenizer_folder(tmp.path, tj);
  std::vector<std::string> warnings;
  const kq::WarningHandler previous = kq::set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  const Tokenizer t = Tokenizer::load(tmp.path);
  kq::set_warning_handler(previous);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find((tmp.path / "tokenizer.json").string() + ": a normalizer (Lowercase) is not supported"),
            std::string::npos)
      << warnings[0];
  EXPECT_NE(warnings[0].find("tokenizer.json is not used, " + (tmp.path / "vocab.json").string() + " + merges.txt"),
            std::string::npos)
      << warnings[0];
  // A folder whose tokenizer.json is used warns about nothing.
  warnings.clear();
  kq::set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  (void)Tokenizer::load(demo_dir());
  kq::set_warning_handler(previous);
  EXPECT_TRUE(warnings.empty()) << warnings[0];
}

TEST(TokenizerChoice, MalformedTokenizerJsonIsAnErrorEvenWithThePair) {
  kq::testing::TempDir tmp;
  write_tokenizer_folder(tmp.path, json::parse(slurp(demo_dir() / "tokenizer.json")));
  std::ofstream(tmp.path / "tokenizer.json", std::ios::binary | std::ios::trunc) << "{\"model\": ";
  try {
    Tokenizer::load(tmp.path);
    FAIL() << "no error";
  } catch (const kq::FormatError& e) {
    EXPECT_NE(std::string(e.what()).find("tokenizer.json"), std::string::npos) << e.what();
  }
}
