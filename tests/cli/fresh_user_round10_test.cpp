// Fresh-user findings, round 10: --json over the --calibration text (it was
// replaced by the JSON, exit 0), --keep values CLI11 rewrote ("[mlp]" became
// "mlp", "[c_fc,c_proj]" two patterns), hostile --keep regexes (a stack
// overflow, exit 139, and a hang under std::regex) and empty path or pattern
// values (exit 1, or --keep '' keeping every layer) that are usage errors.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace fs = std::filesystem;
using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::read_all;
using kq::testing::run_kq;

namespace {

/// The keep_patterns a quantized folder's config.json records.
std::vector<std::string> recorded_keep_patterns(const fs::path& folder) {
  const auto cfg = nlohmann::json::parse(read_all(folder / "config.json"));
  return cfg.at("quantization_config").at("keep_patterns").get<std::vector<std::string>>();
}

}  // namespace

// kq bench --json onto the --calibration file is refused (exit 1) and the file is kept.
TEST(CliFreshUser10, BenchJsonOverTheCalibrationFileIsRefused) {
  kq::testing::TempDir tmp;
  const fs::path cal = tmp.path / "mycal.txt";
  fs::copy_file(demo_model() / "demo-calibration.txt", cal);
  const auto size = fs::file_size(cal);
  const auto r = run_kq({"bench", "--modes", "awq", "--calibration", cal.string(), "--json", cal.string(),
                         "--no-latency", "--samples", "1", "--threads", "1"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "is the --calibration file")) << r.err;
  EXPECT_EQ(fs::file_size(cal), size) << "the calibration text was overwritten";
}

// kq quantize --out naming the --calibration file, or a folder holding it,
// with --overwrite, is refused before the file is replaced.
TEST(CliFreshUser10, QuantizeOutOverTheCalibrationFileIsRefused) {
  kq::testing::TempDir tmp;
  fs::create_directories(tmp.path / "dir");
  const fs::path cal = tmp.path / "dir" / "cal.txt";
  fs::copy_file(demo_model() / "demo-calibration.txt", cal);
  for (const fs::path& out : {tmp.path / "dir", tmp.path / "dir" / "."}) {
    const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "awq", "--calibration",
                           cal.string(), "-o", out.string(), "--overwrite", "--threads", "1"});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "would replace the --calibration file")) << r.err;
    EXPECT_TRUE(fs::is_regular_file(cal)) << "the calibration text was removed";
  }
}

// A regex character class reaches the matcher unchanged: "[mlp]" and
// "[c_fc,c_proj]" are one pattern each (every gpt2-tiny layer name has an m,
// l or p, or a c, _, f, ',', p, r, o or j), recorded verbatim.
TEST(CliFreshUser10, KeepBracketsAreARegexClass) {
  kq::testing::TempDir tmp;
  for (const std::string p : {"[mlp]", "[c_fc,c_proj]"}) {
    const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "--keep", p, "-o",
                           (tmp.path / "q").string(), "--threads", "1"});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "nothing to quantize")) << r.err;
    EXPECT_TRUE(has(r.err, "(--keep " + p + ")")) << r.err;
  }
  // A class inside a pattern that matches some layers only (the mlp.c_fc ones), and a comma kept as a comma.
  const fs::path out = tmp.path / "q2";
  const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "--keep", "c_[f]c",
                         "--keep", "x,y", "-o", out.string(), "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(recorded_keep_patterns(out), (std::vector<std::string>{"c_[f]c", "x,y"}));
  // kq bench takes the same option the same way.
  const auto b = run_kq(
      {"bench", "--modes", "int8", "--keep", "[mlp]", "--samples", "1", "--no-latency", "--threads", "1"});
  EXPECT_NE(b.status, 2) << b.err;
  EXPECT_FALSE(has(b.err, "matches no layer")) << b.err;
}

// Hostile patterns fail as usage errors naming --keep instead of crashing or hanging.
TEST(CliFreshUser10, HostileKeepPatternsAreUsageErrors) {
  kq::testing::TempDir tmp;
  const std::string nested = std::string(20000, '(') + std::string(20000, ')');
  const std::string literal(100000, 'a');
  const std::string deep = std::string(100, '(') + "a" + std::string(100, ')');
  for (const std::string& p : {nested, literal, deep, std::string("(.*)*x$")}) {
    for (const char* cmd : {"quantize", "bench"}) {
      std::vector<std::string> args{cmd, "-m", demo_model().string(), "--keep", p, "--threads", "1"};
      if (std::string(cmd) == "quantize")
        args.insert(args.end(), {"--mode", "int8", "-o", (tmp.path / "q").string()});
      else
        args.insert(args.end(), {"--modes", "int8", "--samples", "1", "--no-latency"});
      const auto r = run_kq(args, 60);
      EXPECT_EQ(r.status, 2) << cmd << " " << p.substr(0, 20) << ": " << r.err.substr(0, 300);
      EXPECT_TRUE(has(r.err, "kq: error: --keep: ")) << r.err.substr(0, 300);
      EXPECT_LT(r.err.size(), 2000u) << "the message quotes a whole huge pattern";
    }
  }
  // Realistic patterns keep working.
  const fs::path out = tmp.path / "ok";
  const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "--keep",
                         R"(^(\w+\.)*mlp\.c_proj$)", "-o", out.string(), "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "quantized 6 of 9 linear layers")) << r.out;
}

// Empty path and pattern values are usage errors (exit 2) naming the option.
TEST(CliFreshUser10, EmptyValuesAreUsageErrors) {
  kq::testing::TempDir tmp;
  const std::string m = demo_model().string();
  const std::string t = (demo_model() / "demo-eval.txt").string();
  const std::string o = (tmp.path / "q").string();
  const std::vector<std::pair<std::vector<std::string>, std::string>> cases = {
      {{"eval", "-m", "", "-t", t}, "--model"},
      {{"eval", "-m", m, "-t", ""}, "--text"},
      {{"eval", "-m", m, "-t", t, "--json", ""}, "--json"},
      {{"quantize", "-m", "", "--mode", "int8", "-o", o}, "--model"},
      {{"quantize", "-m", m, "--mode", "int8", "-o", ""}, "--out"},
      {{"quantize", "-m", m, "--mode", "awq", "-o", o, "--calibration", ""}, "--calibration"},
      {{"quantize", "-m", m, "--mode", "int8", "-o", o, "--keep", ""}, "--keep"},
      {{"bench", "-m", "", "--modes", "int8", "--no-latency"}, "--model"},
      {{"bench", "-t", "", "--modes", "int8", "--no-latency"}, "--text"},
      {{"bench", "--json", "", "--modes", "int8", "--no-latency"}, "--json"},
      {{"bench", "--calibration", "", "--modes", "awq", "--no-latency"}, "--calibration"},
      {{"bench", "--keep", "", "--modes", "int8", "--no-latency"}, "--keep"},
  };
  for (const auto& [args, option] : cases) {
    const auto r = run_kq(args, 60);
    EXPECT_EQ(r.status, 2) << args[0] << " " << option << ": " << r.err;
    EXPECT_TRUE(has(r.err, "kq: error: " + option + ": ")) << r.err;
    EXPECT_FALSE(fs::exists(o)) << "ran: " << r.out;
  }
}
