// Fresh-user findings: --json over the model's own files (the weights became
// JSON), and --json "" (silently ignored).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace fs = std::filesystem;
using kq::testing::demo_model;
using kq::testing::read_all;
using kq::testing::run_kq;

namespace {

using kq::testing::has;

/// The command line of `cmd` (eval or bench, the quick settings) on `model` with `extra`.
std::vector<std::string> quick(const std::string& cmd, const fs::path& model, std::vector<std::string> extra) {
  std::vector<std::string> a{cmd, "--model", model.string(), "--samples", "1", "--threads", "1"};
  if (cmd == "bench") a.insert(a.end(), {"--modes", "int8", "--no-latency"});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

// --json naming a file of the --model folder (directly, through "./" and
// "..", through a symbolic link, or a hard link to it) is refused before the
// run, naming the option and the file, and the file is left as it was.
TEST(CliOutputGuard, JsonOverAFileOfTheModelFolderIsRefused) {
  kq::testing::TempDir tmp;
  const fs::path m = tmp.path / "cpy";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  fs::create_directories(tmp.path / "elsewhere");
  fs::create_symlink(m / "config.json", tmp.path / "elsewhere" / "link.json");
  fs::create_hard_link(m / "tokenizer.json", tmp.path / "elsewhere" / "hard.json");
  const std::vector<std::string> targets = {
      (m / "model.safetensors").string(),   (m / "config.json").string(),
      (m / "tokenizer.json").string(),      (m / "vocab.json").string(),
      (m / "merges.txt").string(),          (m / "generation_config.json").string(),
      (m / "." / "tokenizer_config.json").string(),
      (m / ".." / "cpy" / "model.safetensors").string(),
      (tmp.path / "elsewhere" / "link.json").string(),
      (tmp.path / "elsewhere" / "hard.json").string(),
      (m / "demo-eval.txt").string(),  // bench's default text when --text is not given
  };
  std::vector<std::string> before;
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json", "vocab.json", "merges.txt",
                        "generation_config.json", "tokenizer_config.json", "demo-eval.txt"})
    before.push_back(read_all(m / f));
  const std::string text = (demo_model() / "demo-eval.txt").string();
  for (const char* cmd : {"eval", "bench"}) {
    for (const std::string& target : targets) {
      std::vector<std::string> extra{"--json", target};
      if (std::string(cmd) == "eval") extra.insert(extra.end(), {"--text", text});
      const auto r = run_kq(quick(cmd, m, extra));
      EXPECT_EQ(r.status, 1) << cmd << " --json " << target << "\n" << r.out;
      EXPECT_TRUE(has(r.err, "kq: error: --json '" + target + "'") && has(r.err, "--model folder")) << r.err;
      EXPECT_FALSE(has(r.out, "perplexity")) << "ran before failing: " << r.out;
      EXPECT_FALSE(has(r.out, "wrote")) << r.out;
    }
  }
  size_t i = 0;
  for (const char* f : {"model.safetensors", "config.json", "tokenizer.json", "vocab.json", "merges.txt",
                        "generation_config.json", "tokenizer_config.json", "demo-eval.txt"})
    EXPECT_EQ(read_all(m / f), before[i++]) << f << " was replaced";
  EXPECT_TRUE(fs::is_symlink(tmp.path / "elsewhere" / "link.json"));
}

// A new file inside the model folder is fine (nothing of the model is replaced).
TEST(CliOutputGuard, JsonAsANewFileInTheModelFolderIsWritten) {
  kq::testing::TempDir tmp;
  const fs::path m = tmp.path / "cpy";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  const fs::path out = m / "eval.json";
  const auto r = run_kq(quick("eval", m, {"--text", (m / "demo-eval.txt").string(), "--json", out.string()}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_GT(nlohmann::json::parse(read_all(out)).at("ppl").get<double>(), 1.0);
}

// --json "" is an error like --out "" (it was silently ignored: nothing written, exit 0);
// a usage error (exit 2, an empty option value), found while parsing.
TEST(CliOutputGuard, EmptyJsonIsAnError) {
  const std::string text = (demo_model() / "demo-eval.txt").string();
  for (const char* cmd : {"eval", "bench"}) {
    const auto r = run_kq(quick(cmd, demo_model(), {"--text", text, "--json", ""}));
    EXPECT_EQ(r.status, 2) << cmd;
    EXPECT_TRUE(has(r.err, "kq: error: --json: the path is empty")) << r.err;
    EXPECT_FALSE(has(r.out, "perplexity")) << "ran before failing: " << r.out;
  }
}
