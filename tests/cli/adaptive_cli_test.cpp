// kq quantize --mode adaptive (--target-reduction, --strategy) and kq bench
// --modes adaptive-rP on the shipped demo model.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

using kq::testing::has;

nlohmann::json read_json(const fs::path& p) {
  std::ifstream f(p);
  return nlohmann::json::parse(f);
}

}  // namespace

TEST(CliAdaptive, QuantizePrintsThePlanAndWritesAMixedFolder) {
  TempDir tmp;
  const std::string model = kq::testing::demo_model().string();
  const fs::path out = tmp.path / "q";
  const auto r = run_kq(
      {"quantize", "-m", model, "--mode", "adaptive", "--target-reduction", "0.8", "-o", out.string()});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "adaptive precision plan (entropy strategy, target 80 %")) << r.out;
  EXPECT_TRUE(has(r.out, "transformer.h.0.attn.c_attn")) << r.out;
  EXPECT_TRUE(has(r.out, "adaptive-r80")) << r.out;
  // The folder holds what the plan printed, module by module.
  const nlohmann::json qc = read_json(out / "config.json")["quantization_config"];
  EXPECT_EQ(qc["mode"], "mixed");
  int int8 = 0, nf4 = 0;
  for (const auto& [name, mode] : qc["modules"].items()) {
    int8 += mode == "int8";
    nf4 += mode == "nf4";
    const std::string line_start = name + " ";
    const size_t at = r.out.find(line_start);
    ASSERT_NE(at, std::string::npos) << name;
    const std::string line = r.out.substr(at, r.out.find('\n', at) - at);
    std::string want = " ";  // built in steps: GCC 12's -Wrestrict misfires on " " + s + " " at -O3
    want.append(mode.get<std::string>()).append(" ");
    EXPECT_TRUE(has(line, want)) << line;
  }
  EXPECT_GT(int8, 0);
  EXPECT_GT(nf4, 0);
  const auto e = run_kq({"eval", "-m", out.string(), "-t",
                         (kq::testing::demo_model() / "demo-eval.txt").string(), "--samples", "1"});
  EXPECT_EQ(e.status, 0) << e.err;

  // --strategy and a name with its own target.
  const auto s = run_kq({"quantize", "-m", model, "--mode", "adaptive-r85", "--strategy", "error", "-o",
                         (tmp.path / "q2").string()});
  ASSERT_EQ(s.status, 0) << s.err;
  EXPECT_TRUE(has(s.out, "(error strategy, target 85 %")) << s.out;
}

TEST(CliAdaptive, BadValuesAreErrors) {
  TempDir tmp;
  const std::string model = kq::testing::demo_model().string();
  const std::string out = (tmp.path / "q").string();
  // Beyond NF4 everywhere on any model: a usage error naming the target and the largest reduction.
  const auto far =
      run_kq({"quantize", "-m", model, "--mode", "adaptive", "--target-reduction", "0.95", "-o", out});
  EXPECT_EQ(far.status, 2) << far.err;
  EXPECT_TRUE(has(far.err, "--target-reduction 0.95: a target reduction of 95 % cannot be reached")) << far.err;
  EXPECT_TRUE(has(far.err, "at most 87.10 %")) << far.err;
  EXPECT_FALSE(fs::exists(out));
  // Beyond this model (its biases, its shapes) but not beyond every model: an error of the run (exit 1).
  const auto near =
      run_kq({"quantize", "-m", model, "--mode", "adaptive", "--target-reduction", "0.87", "-o", out});
  EXPECT_EQ(near.status, 1) << near.err;
  EXPECT_TRUE(has(near.err, "0.87 cannot be reached")) << near.err;
  EXPECT_TRUE(has(near.err, "the reduction is 0.8659")) << near.err;
  EXPECT_FALSE(fs::exists(out));
  // Usage errors (exit 2): out of range, unknown strategy, a bad adaptive name, options without an adaptive
  // mode.
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--mode", "adaptive", "--target-reduction", "1.5"},
        {"--mode", "adaptive", "--target-reduction", "0"},
        {"--mode", "adaptive", "--strategy", "hessian"},
        {"--mode", "adaptive-r120"},
        {"--mode", "int8", "--target-reduction", "0.8"},
        {"--mode", "nf4", "--strategy", "error"}}) {
    std::vector<std::string> args{"quantize", "-m", model, "-o", out};
    args.insert(args.end(), extra.begin(), extra.end());
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 2) << extra[1] << ": " << r.err;
    EXPECT_TRUE(has(r.err, "kq: error:")) << r.err;
  }
  EXPECT_FALSE(fs::exists(out));
}

TEST(CliAdaptive, BenchRunsAnAdaptiveMode) {
  TempDir tmp;
  const fs::path json = tmp.path / "b.json";
  const auto r = run_kq({"bench", "--modes", "int8", "adaptive-r80", "--samples", "1", "--no-latency",
                         "--json", json.string()});
  EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;
  EXPECT_TRUE(has(r.out, "adaptive-r80")) << r.out;
  const nlohmann::json j = read_json(json);
  ASSERT_EQ(j["results"].size(), 2u);
  const nlohmann::json& a = j["results"][1];
  EXPECT_EQ(a["mode_canonical"], "adaptive-r80");
  EXPECT_EQ(a["family"], "int4");  // the plan's lowest precision is NF4
  EXPECT_EQ(a["threshold_pct"], 5.0);
  EXPECT_GE(1.0 - a["linear_bytes_after"].get<double>() / a["linear_bytes_before"].get<double>(), 0.75);
  // One mode given twice is a usage error.
  const auto twice =
      run_kq({"bench", "--modes", "adaptive", "adaptive-r80", "--samples", "1", "--no-latency"});
  EXPECT_EQ(twice.status, 2) << twice.err;
}

// ---- fresh-user findings ----

TEST(CliAdaptive, HugeTargetIsAUsageErrorNamingTheModeShortenedAndTheRange) {
  // 400 nines: std::stod threw std::out_of_range, "kq: internal error: stod", exit 70.
  TempDir tmp;
  const std::string mode = "adaptive-r" + std::string(400, '9');
  const auto b = run_kq({"bench", "--modes", mode});
  const auto q = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", mode, "-o",
                         (tmp.path / "q").string()});
  for (const auto* r : {&b, &q}) {
    EXPECT_EQ(r->status, 2) << r->err;
    EXPECT_TRUE(has(r->err, "'adaptive-r9999")) << r->err;
    EXPECT_TRUE(has(r->err, "(410 characters)")) << r->err;
    EXPECT_TRUE(has(r->err, "a number in (0, 100)")) << r->err;
    EXPECT_FALSE(has(r->err, "internal error")) << r->err;
    EXPECT_LT(r->err.size(), 600u) << r->err;
  }
  // adaptive-r0 (remove nothing) is no mode: the same usage error.
  const auto zero = run_kq({"bench", "--modes", "adaptive-r0"});
  EXPECT_EQ(zero.status, 2) << zero.err;
  EXPECT_TRUE(has(zero.err, "'adaptive-r0'")) << zero.err;
  EXPECT_TRUE(has(zero.err, "(0, 100)")) << zero.err;
}

TEST(CliAdaptive, UnreachableTargetFailsBeforeAnyModeRuns) {
  // Beyond every model (NF4 everywhere removes at most 87.1 %): a usage error, before int8 runs.
  const auto far = run_kq({"bench", "--modes", "int8", "adaptive-r99", "--samples", "1", "--no-latency"});
  EXPECT_EQ(far.status, 2) << far.err;
  EXPECT_TRUE(has(far.err, "mode 'adaptive-r99': a target reduction of 99 % cannot be reached")) << far.err;
  EXPECT_TRUE(has(far.err, "87.10 %")) << far.err;
  EXPECT_EQ(far.out, "");
  // Beyond this model only (86.59 % at most on gpt2-tiny): named as soon as the model is loaded.
  const auto near = run_kq({"bench", "--modes", "int8", "adaptive-r87", "--samples", "1", "--no-latency"});
  EXPECT_EQ(near.status, 1) << near.err;
  EXPECT_TRUE(has(near.err, "--modes adaptive-r87:")) << near.err;
  EXPECT_TRUE(has(near.err, "the reduction is 0.8659")) << near.err;
  EXPECT_EQ(near.out, "") << "a mode ran before the unreachable one was refused";
  EXPECT_FALSE(has(near.err, "int8 perplexity")) << near.err;
}

TEST(CliAdaptive, PlannedAndReportedReductionsAreOneFigureAboveTheTarget) {
  // The plan counted the weight matrices, the report the biases too: 80.2 % planned, 79.8 % reported.
  TempDir tmp;
  const auto r = run_kq({"quantize", "-m", kq::testing::demo_model().string(), "--mode", "adaptive-r80", "-o",
                         (tmp.path / "q").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  auto pct_after = [&](const std::string& start) {
    const size_t at = r.out.find(start);
    EXPECT_NE(at, std::string::npos) << start << "\n" << r.out;
    if (at == std::string::npos) return 0.0;
    const size_t open = r.out.find('(', at);
    return std::stod(r.out.substr(open + 1));
  };
  const double planned = pct_after("  planned: "), reported = pct_after("linear weights ");
  EXPECT_GE(planned, 80.0) << r.out;
  EXPECT_GE(reported, 80.0) << r.out;
  EXPECT_NEAR(planned, reported, 0.051) << r.out;  // one figure, printed to 2 and 1 decimals
  EXPECT_TRUE(has(r.out, "biases included")) << r.out;
  EXPECT_TRUE(has(r.out, "exact knapsack")) << r.out;

  const fs::path json = tmp.path / "b.json";
  const auto b = run_kq({"bench", "--modes", "adaptive-r80", "--samples", "1", "--no-latency", "--json",
                         json.string()});
  ASSERT_TRUE(b.status == 0 || b.status == 3) << b.err;
  const nlohmann::json a = read_json(json)["results"][0];
  EXPECT_GE(1.0 - a["linear_bytes_after"].get<double>() / a["linear_bytes_before"].get<double>(), 0.80);
}
