// Options and output keys that mean the same thing are spelled the same in
// every subcommand (fresh-user review: -m existed for some commands only;
// kq eval --json said max_windows where kq bench --json says samples).
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <regex>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::run_kq;

namespace {

using kq::testing::has;

/// The subcommand names listed by `kq --help`.
std::vector<std::string> subcommands() {
  const auto r = run_kq({"--help"});
  std::vector<std::string> names;
  const auto start = r.out.find("Subcommands:");
  if (start == std::string::npos) return names;
  const std::regex line("\n  ([a-z]+) ");
  for (auto it = std::sregex_iterator(r.out.begin() + long(start), r.out.end(), line); it != std::sregex_iterator(); ++it)
    names.push_back((*it)[1]);
  return names;
}

}  // namespace

TEST(CliConsistency, EveryModelTakingCommandHasDashM) {
  const std::vector<std::string> cmds = subcommands();
  ASSERT_GE(cmds.size(), 5u) << "could not read the subcommands of kq --help";
  int with_model = 0;
  for (const std::string& c : cmds) {
    const auto r = run_kq({c, "--help"});
    ASSERT_EQ(r.status, 0) << c << ": " << r.err;
    if (!has(r.out, "--model")) continue;
    ++with_model;
    EXPECT_TRUE(has(r.out, "-m,--model")) << "kq " << c << " has --model without -m:\n" << r.out;
  }
  EXPECT_GE(with_model, 4) << "eval, generate, quantize and bench take --model";
  // bench and eval share --text; both spell it -t too.
  for (const char* c : {"eval", "bench"}) EXPECT_TRUE(has(run_kq({c, "--help"}).out, "-t,--text")) << c;
}

TEST(CliConsistency, DashMRunsEvalAndGenerate) {
  const std::string m = demo_model().string(), text = (demo_model() / "demo-eval.txt").string();
  const auto e = run_kq({"eval", "-m", m, "-t", text, "--samples", "1", "--threads", "1", "--quiet"});
  EXPECT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(has(e.out, "perplexity:")) << e.out;
  const auto g = run_kq({"generate", "-m", m, "--prompt", "Once upon a time", "-n", "2", "--threads", "1"});
  EXPECT_EQ(g.status, 0) << g.err;
  EXPECT_TRUE(has(g.out, "Once upon a time")) << g.out;
}

// The --samples limit is "samples" in both JSON files (the option's name), with
// the same value; "windows" is the number evaluated.
TEST(CliConsistency, EvalAndBenchJsonNameTheSamplesLimitAlike) {
  kq::testing::TempDir tmp;
  const std::string m = demo_model().string(), text = (demo_model() / "demo-eval.txt").string();
  const std::string ej = (tmp.path / "eval.json").string(), bj = (tmp.path / "bench.json").string();
  const auto e = run_kq({"eval", "--model", m, "--text", text, "--samples", "2", "--threads", "1", "--quiet",
                         "--json", ej});
  ASSERT_EQ(e.status, 0) << e.err;
  const auto b = run_kq({"bench", "--model", m, "--text", text, "--modes", "int8", "--samples", "2", "--threads",
                         "1", "--no-latency", "--json", bj});
  ASSERT_EQ(b.status, 0) << b.err;
  const auto je = nlohmann::json::parse(kq::testing::read_all(ej));
  const auto jb = nlohmann::json::parse(kq::testing::read_all(bj));
  for (const auto* j : {&je, &jb}) {
    EXPECT_FALSE(j->contains("max_windows")) << j->dump();
    ASSERT_TRUE(j->contains("samples")) << j->dump();
    EXPECT_EQ((*j)["samples"], 2) << j->dump();
    EXPECT_EQ((*j)["windows"], 2) << j->dump();
  }
  // The README names the key as the JSON has it.
  const std::string readme = kq::testing::read_all(kq::testing::source_dir() / "README.md");
  EXPECT_FALSE(has(readme, "max_windows"));
}
