// `kq quantize` and the side files of the model folder (tokenizer files,
// generation_config.json, Hugging Face extras): a file that the quantized
// folder's loaders would refuse fails the command before any work (it was
// copied, and `kq eval` refused the output); added_tokens.json and the chat
// templates travel with the folder, byte for byte.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::read_all;
using kq::testing::run_kq;
using kq::testing::TempDir;
using kq::testing::write_text;
namespace fs = std::filesystem;

namespace {

/// A copy of every file of the demo model in DIR/model.
fs::path copy_demo(const fs::path& dir) {
  const fs::path m = dir / "model";
  fs::create_directories(m);
  for (const auto& e : fs::directory_iterator(demo_model())) fs::copy_file(e.path(), m / e.path().filename());
  return m;
}

kq::testing::CliResult quantize(const fs::path& model, const fs::path& out, bool overwrite = false) {
  std::vector<std::string> args{"quantize", "-m", model.string(), "--mode", "int8", "-o", out.string(), "--threads",
                                "1"};
  if (overwrite) args.push_back("--overwrite");
  return run_kq(args);
}

/// JSON arrays nested `depth` levels deep.
std::string nested(size_t depth) { return std::string(depth, '[') + std::string(depth, ']'); }

}  // namespace

TEST(CliQuantizeSideFiles, FileTheLoadersWouldRefuseFailsBeforeAnyWork) {
  struct Case {
    const char* file;
    std::string content;
    bool without_tokenizer_json;  // so that vocab.json + merges.txt are what the tokenizer loader reads
    const char* says;
  };
  const std::vector<Case> cases{
      {"tokenizer_config.json", R"({"bos_token": )" + nested(200000) + "}", false, "nested more than"},
      {"tokenizer.json", "{", false, "tokenizer.json"},
      {"generation_config.json", R"({"eos_token_id": "2"})", false, "eos_token_id"},
      {"generation_config.json", nested(200000), false, "nested more than"},
      {"vocab.json", "[1]", true, "vocabulary must be a JSON object"},
      {"merges.txt", "#version: 0.2\nab\n", true, "expected two tokens"},
  };
  for (const Case& c : cases) {
    TempDir tmp;
    const fs::path m = copy_demo(tmp.path), out = tmp.path / "q";
    write_text(m / c.file, c.content);
    if (c.without_tokenizer_json) fs::remove(m / "tokenizer.json");
    const auto r = quantize(m, out);
    EXPECT_EQ(r.status, 1) << c.file << ": " << r.err;
    EXPECT_TRUE(has(r.err, (m / c.file).string())) << c.file << ": " << r.err;
    EXPECT_TRUE(has(r.err, c.says)) << c.file << ": " << r.err;
    EXPECT_TRUE(has(r.err, "nothing was written")) << c.file << ": " << r.err;
    EXPECT_FALSE(has(r.out, "quantized ")) << c.file << ": worked before failing: " << r.out;
    EXPECT_FALSE(fs::exists(out)) << c.file;
  }
}

// A side file that is there but not a regular file cannot be copied: said
// before quantizing (chat_template.jinja was not copied at all).
TEST(CliQuantizeSideFiles, SideFileThatIsAFolderFailsBeforeAnyWork) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path), out = tmp.path / "q";
  fs::create_directory(m / "chat_template.jinja");
  const auto r = quantize(m, out);
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, (m / "chat_template.jinja").string() + ": is a directory")) << r.err;
  EXPECT_FALSE(has(r.out, "quantized ")) << r.out;
  EXPECT_FALSE(fs::exists(out));
}

// added_tokens.json, chat_template.json and chat_template.jinja were left
// behind. No loader of kq reads them, so they are copied unparsed (even a
// special_tokens_map.json that is not JSON), and a folder holding them can be
// replaced with --overwrite.
TEST(CliQuantizeSideFiles, HuggingFaceExtrasAreCopiedByteForByte) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path), out = tmp.path / "q";
  const std::vector<std::pair<std::string, std::string>> extras{
      {"added_tokens.json", "{\"<|im_start|>\": 50257,\n \"<|im_end|>\": 50258}\n"},
      {"chat_template.json", R"({"chat_template": "{% for m in messages %}{{ m['content'] }}{% endfor %}"})"},
      {"chat_template.jinja", "{% for m in messages %}\n{{ m['content'] }}\r\n{% endfor %}"},
      {"special_tokens_map.json", "not JSON, and no loader of kq reads it"},
  };
  for (const auto& [name, text] : extras) write_text(m / name, text);
  const auto r = quantize(m, out);
  ASSERT_EQ(r.status, 0) << r.err;
  for (const auto& [name, text] : extras) EXPECT_EQ(read_all(out / name), text) << name;
  const auto again = quantize(m, out, /*overwrite=*/true);
  EXPECT_EQ(again.status, 0) << again.err;
  EXPECT_EQ(read_all(out / "chat_template.jinja"), extras[2].second);
}

// The loaders' own choice decides what is checked: with a usable
// tokenizer.json, vocab.json is not read (not by kq eval either), so a broken
// one does not stop kq quantize; and a folder without tokenizer files stays
// quantizable (weights only), with a warning (new-user finding: it wrote a
// folder kq eval and kq generate then refused, without a word).
TEST(CliQuantizeSideFiles, OnlyWhatTheLoadersReadIsChecked) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path);
  write_text(m / "vocab.json", "[1]");
  const auto r = quantize(m, tmp.path / "q");
  EXPECT_EQ(r.status, 0) << r.err;
  const auto e = run_kq({"eval", "-m", (tmp.path / "q").string(), "-t", (demo_model() / "demo-eval.txt").string(),
                         "--samples", "1", "--threads", "1"});
  EXPECT_EQ(e.status, 0) << e.err;
  for (const char* f : {"tokenizer.json", "vocab.json", "merges.txt", "tokenizer_config.json"}) fs::remove(m / f);
  const auto bare = quantize(m, tmp.path / "bare");
  EXPECT_EQ(bare.status, 0) << bare.err;
  const std::string warning = "kq: warning: " + m.string() +
                              ": no tokenizer files (tokenizer.json, or vocab.json + merges.txt); the quantized "
                              "folder will have none either, and kq eval, kq generate and kq bench need them";
  const size_t at = bare.err.find(warning);
  EXPECT_NE(at, std::string::npos) << bare.err;
  EXPECT_EQ(bare.err.find(warning, at + 1), std::string::npos) << "warned once: " << bare.err;
  EXPECT_FALSE(has(e.err, "no tokenizer files")) << e.err;
}

// A well-formed tokenizer.json that kq does not run (here BPE byte_fallback)
// is warned about, not refused: the folder still serves other tools.
TEST(CliQuantizeSideFiles, UnsupportedTokenizerIsWarnedAbout) {
  TempDir tmp;
  const fs::path m = copy_demo(tmp.path);
  nlohmann::json tj = nlohmann::json::parse(read_all(m / "tokenizer.json"));
  tj["model"]["byte_fallback"] = true;
  write_text(m / "tokenizer.json", tj.dump());
  fs::remove(m / "vocab.json");
  fs::remove(m / "merges.txt");
  const auto r = quantize(m, tmp.path / "q");
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: " + (m / "tokenizer.json").string() + ": BPE byte_fallback is not supported"))
      << r.err;
  EXPECT_TRUE(has(r.err, "kq eval, kq generate and kq bench will refuse as well")) << r.err;
  EXPECT_EQ(read_all(tmp.path / "q" / "tokenizer.json"), tj.dump());
}
