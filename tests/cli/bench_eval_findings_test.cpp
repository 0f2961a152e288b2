// `kq bench` / `kq eval` findings of a fresh-user test: an empty AWQ
// calibration file is named (no C++ field names) and a short one warned about,
// as in kq quantize; a verdict on few scored tokens is marked unreliable in the
// table and the JSON; `--json -` writes the JSON to standard output (the report
// to standard error) instead of a file named "-"; messages use singular forms;
// a 4-bit group size that is not a power of two names the mode, not a C++
// field; kq info on a CPU-only build says the FP8 modes still run on the CPU.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

namespace {

const std::string kDemo = kq::testing::demo_model().string();

using kq::testing::has;
using kq::testing::write_text;

}  // namespace

TEST(CliBenchFindings, EmptyCalibrationFileIsNamed) {
  TempDir tmp;
  for (const char* text : {"", "  \n\t\n"}) {
    SCOPED_TRACE(::testing::PrintToString(std::string(text)));
    const fs::path calib = write_text(tmp.path / "empty.txt", text);
    const auto r = run_kq({"bench", "--modes", "awq", "--calibration", calib.string(), "--samples", "1",
                           "--threads", "1", "--no-latency"});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "--calibration '" + calib.string() + "'")) << r.err;
    EXPECT_TRUE(has(r.err, std::string(text).empty() ? "is empty" : "only whitespace")) << r.err;
    EXPECT_FALSE(has(r.err, "QuantizeOptions")) << r.err;
    EXPECT_FALSE(has(r.err, "calibration.tokens")) << r.err;
  }
}

TEST(CliBenchFindings, ShortCalibrationTextIsWarned) {
  TempDir tmp;
  const fs::path calib = write_text(tmp.path / "short.txt", "The cat sat on the mat. It was warm.\n");
  const auto r = run_kq({"bench", "--modes", "awq", "--calibration", calib.string(), "--samples", "1",
                         "--threads", "1", "--no-latency"});
  EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: --calibration '" + calib.string() + "': only ")) << r.err;
  EXPECT_TRUE(has(r.err, "less than one calibration window of 256 tokens")) << r.err;
  // The shipped demo calibration text (1,754 tokens) is not warned about.
  const auto d = run_kq({"bench", "--modes", "awq", "--samples", "1", "--threads", "1", "--no-latency"});
  EXPECT_TRUE(d.status == 0 || d.status == 3) << d.err;
  EXPECT_FALSE(has(d.err, "--calibration")) << d.err;
}

// --samples 1 scores 255 tokens (< kMinScoredTokensForVerdict): the verdict is
// marked in the table and the JSON; all the windows of the demo text are enough.
TEST(CliBenchFindings, FewScoredTokensMarkTheVerdictUnreliable) {
  TempDir tmp;
  const fs::path json = tmp.path / "r.json";
  const auto r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--no-latency",
                         "--json", json.string()});
  ASSERT_EQ(r.status, 0) << r.err;  // the exit status still follows PASS / FAIL
  EXPECT_TRUE(has(r.out, "PASS?")) << r.out;
  EXPECT_TRUE(has(r.out, "result unreliable")) << r.out;
  const auto j = nlohmann::json::parse(kq::testing::read_all(json));
  EXPECT_EQ(j.at("reliable"), false);
  EXPECT_EQ(j.at("scored_tokens"), 255);

  const auto all = run_kq({"bench", "--modes", "int8", "--threads", "1", "--no-latency", "--json", json.string()});
  ASSERT_EQ(all.status, 0) << all.err;
  const auto ja = nlohmann::json::parse(kq::testing::read_all(json));
  ASSERT_GE(ja.at("scored_tokens").get<int>(), 1000);
  EXPECT_EQ(ja.at("reliable"), true);
  EXPECT_FALSE(has(all.out, "PASS?")) << all.out;
  EXPECT_FALSE(has(all.out, "unreliable")) << all.out;
}

// The JSON records the settings that change what a mode quantizes: two runs,
// with and without --quantize-lm-head / --keep, had identical settings fields.
TEST(CliBenchFindings, JsonRecordsQuantizeLmHeadAndKeepPatterns) {
  TempDir tmp;
  const fs::path json = tmp.path / "r.json";
  const auto plain = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--no-latency",
                             "--json", json.string()});
  ASSERT_EQ(plain.status, 0) << plain.err;
  const auto a = nlohmann::json::parse(kq::testing::read_all(json));
  EXPECT_EQ(a.at("quantize_lm_head"), false);
  EXPECT_EQ(a.at("keep"), nlohmann::json::array());
  const auto set = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--no-latency",
                           "--quantize-lm-head", "--keep", "c_fc", "--keep", "h\\.1\\.", "--json", json.string()});
  ASSERT_EQ(set.status, 0) << set.err;
  const auto b = nlohmann::json::parse(kq::testing::read_all(json));
  EXPECT_EQ(b.at("quantize_lm_head"), true);
  EXPECT_EQ(b.at("keep"), (nlohmann::json{"c_fc", "h\\.1\\."}));
}

// --json -: the JSON alone on standard output, the report on standard error,
// in kq eval and kq bench alike (it wrote a file named "-").
TEST(CliBenchFindings, JsonDashIsStandardOutput) {
  const std::vector<std::vector<std::string>> cmds = {
      {"eval", "-m", kDemo, "-t", kDemo + "/demo-eval.txt", "--samples", "1", "--threads", "1", "--quiet",
       "--json", "-"},
      {"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--no-latency", "--json", "-"}};
  for (const auto& args : cmds) {
    SCOPED_TRACE(args[0]);
    const auto r = run_kq(args);
    ASSERT_EQ(r.status, 0) << r.err;
    nlohmann::json j;
    ASSERT_NO_THROW(j = nlohmann::json::parse(r.out)) << r.out;
    EXPECT_TRUE(j.contains("scored_tokens")) << r.out;
    EXPECT_TRUE(has(r.err, "perplexity")) << r.err;  // the human-readable report
    EXPECT_FALSE(has(r.out, "wrote -")) << r.out;
    EXPECT_FALSE(has(r.err, "wrote -")) << r.err;
  }
}

TEST(CliBenchFindings, SingularForms) {
  const auto e = run_kq({"eval", "-m", kDemo, "-t", kDemo + "/demo-eval.txt", "--samples", "1", "--threads", "1",
                         "--quiet"});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(has(e.out, "(first window only)")) << e.out;
  EXPECT_FALSE(has(e.out, "first 1 windows")) << e.out;
  const auto b = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--runs", "1",
                         "--decode-tokens", "1", "--prompt-tokens", "8"});
  ASSERT_EQ(b.status, 0) << b.err;
  EXPECT_TRUE(has(b.out, "1 token per run; median over 1 run of each run's ms/token\n")) << b.out;
}

TEST(CliBenchFindings, GroupSizeNotAPowerOfTwoNamesTheMode) {
  TempDir tmp;
  for (const std::string mode : {"awq-g7", "int4-g48"}) {
    const auto r = run_kq({"quantize", "-m", kDemo, "--mode", mode, "-o", (tmp.path / "q").string()});
    EXPECT_EQ(r.status, 2) << r.err;
    const std::string size = mode.substr(mode.find('g') + 1);
    EXPECT_TRUE(has(r.err, "group size " + size + " must be a power of two in [32, 256] (mode '" + mode + "'"))
        << r.err;
    EXPECT_FALSE(has(r.err, "QuantSpec")) << r.err;
    EXPECT_FALSE(has(r.err, "for int4")) << r.err;
  }
  const auto n = run_kq({"bench", "--modes", "nf4-b100", "--samples", "1"});
  EXPECT_EQ(n.status, 2) << n.err;
  EXPECT_TRUE(has(n.err, "block size 100 must be a power of two in [32, 256] (mode 'nf4-b100'")) << n.err;
}

TEST(CliBenchFindings, InfoSaysFp8ModesRunOnTheCpu) {
  const auto r = run_kq({"info"});
  ASSERT_EQ(r.status, 0) << r.err;
  if (has(r.out, "FP8:      E4M3 tensor cores available")) GTEST_SKIP() << "this machine has FP8 tensor cores";
  EXPECT_TRUE(has(r.out, "GPU FP8 tensor cores not available")) << r.out;
  EXPECT_TRUE(has(r.out, "the fp8 quantization modes still run on the CPU")) << r.out;
  EXPECT_FALSE(has(r.out, "FP8:      not available")) << r.out;
}
