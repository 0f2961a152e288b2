// New-user finding: with a tokenizer.json that kq does not run (here a
// Lowercase normalizer) and vocab.json + merges.txt beside it, kq generate and
// kq quantize used the pair without a word (kq eval and kq bench said so only
// in their "tokenizer:" header). Every command that loads the tokenizer says
// it once, as a warning naming tokenizer.json, why, and what is used instead.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

/// Occurrences of `needle` in `text`.
size_t count(const std::string& text, const std::string& needle) {
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

TEST(CliTokenizerWarning, UnusedTokenizerJsonIsWarnedOnceByEveryCommand) {
  TempDir tmp;
  const fs::path m = tmp.path / "tj5";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  nlohmann::json tj = nlohmann::json::parse(read_all(m / "tokenizer.json"));
  tj["normalizer"] = nlohmann::json{{"type", "Lowercase"}};
  write_text(m / "tokenizer.json", tj.dump());
  const std::string warning = "kq: warning: " + (m / "tokenizer.json").string() +
                              ": a normalizer (Lowercase) is not supported (supported: NFC, NFD, NFKC or NFKD, "
                              "alone or in a Sequence of them, with a byte-level pre_tokenizer; SentencePiece-style, "
                              "with no pre_tokenizer, Sequence [Prepend \"\u2581\", Replace \" \" -> \"\u2581\"] or "
                              "that Replace alone; or none, an empty Sequence); tokenizer.json is not used, " +
                              (m / "vocab.json").string() + " + merges.txt are instead";
  const std::string text = (demo_model() / "demo-eval.txt").string();
  const std::vector<std::vector<std::string>> commands = {
      {"generate", "-m", m.string(), "--prompt", "Hello World", "-n", "3", "--threads", "1"},
      {"eval", "-m", m.string(), "-t", text, "--samples", "1", "--ctx", "16", "--threads", "1", "--quiet"},
      {"quantize", "-m", m.string(), "--mode", "int8", "-o", (tmp.path / "q").string(), "--threads", "1"},
      {"quantize", "-m", m.string(), "--mode", "awq", "-o", (tmp.path / "qa").string(), "--threads", "1"},
      {"bench", "-m", m.string(), "--modes", "int8", "--samples", "1", "--ctx", "16", "--no-latency", "--threads",
       "1"},
  };
  for (const auto& args : commands) {
    SCOPED_TRACE(args[0] + " " + args[4]);
    const CliResult r = run_kq(args);
    EXPECT_TRUE(r.status == 0 || (args[0] == "bench" && r.status == 3)) << r.err;
    EXPECT_EQ(count(r.err, warning), 1u) << r.err;
  }
  // The quantized folder holds the same files: loading it says so too.
  const CliResult g = run_kq({"generate", "-m", (tmp.path / "q").string(), "--prompt", "Hi", "-n", "1"});
  EXPECT_EQ(g.status, 0) << g.err;
  EXPECT_TRUE(has(g.err, "tokenizer.json is not used")) << g.err;
}

}  // namespace
}  // namespace kq::testing
