// Findings of the round-15 fresh-user test of kq (minor messages), each
// re-run here: kq quantize --mode adaptive --quantize-lm-head on a tied model
// warned with the C++ name AdaptiveOptions::quantize_lm_head; --target-reduction's
// help said (0, 1) while 1e-7 was refused after parsing and 5e-7 silently
// rounded to 1e-6; kq quantize's "linear weights" line did not say what it is
// measured against (FP32, also for a BF16 checkpoint), as kq bench's does.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_data.hpp"

namespace fs = std::filesystem;
using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq;
using kq::testing::TempDir;

TEST(FreshUserRound15, AdaptiveLmHeadWarningNamesTheOption) {
  TempDir tmp;
  const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "adaptive", "--quantize-lm-head", "-o",
                         (tmp.path / "q").string(), "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "kq: warning: --quantize-lm-head: this model ties lm_head to the token embedding")) << r.err;
  EXPECT_FALSE(has(r.err, "AdaptiveOptions::")) << r.err;
}

TEST(FreshUserRound15, TargetReductionHelpAndCheckAgree) {
  EXPECT_TRUE(has(run_kq({"quantize", "--help"}).out, "--target-reduction FLOAT:FLOAT in [0.000001, 0.999999]"));
  TempDir tmp;
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"1e-7", "'1e-7' is out of range (expected a finite number in [0.000001, 0.999999])"},
      {"5e-7", "'5e-7' is out of range"},
      {"0.9999995", "'0.9999995' is out of range"},
      {"0.1234567", "'0.1234567' has more than 6 decimals"}};
  for (const auto& [value, why] : cases) {
    const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "adaptive", "--target-reduction", value,
                           "-o", (tmp.path / "q").string()});
    EXPECT_EQ(r.status, 2) << value << ": " << r.err;
    EXPECT_TRUE(has(r.err, "kq: error: --target-reduction: " + why)) << r.err;
    EXPECT_FALSE(fs::exists(tmp.path / "q"));
  }
}

TEST(FreshUserRound15, QuantizeSaysWhatTheLinearWeightsAreMeasuredAgainst) {
  TempDir tmp;
  const auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", (tmp.path / "q").string(),
                         "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, " % smaller vs FP32, ")) << r.out;
  const fs::path llama = kq::testing::shared_dir() / "models" / "llama-small";
  if (!fs::exists(llama / "config.json")) GTEST_SKIP() << "no shared llama-small (a BF16 checkpoint)";
  const auto b = run_kq({"quantize", "-m", llama.string(), "--mode", "int8", "-o", (tmp.path / "b").string(),
                         "--threads", "1"});
  EXPECT_EQ(b.status, 0) << b.err;
  EXPECT_TRUE(has(b.out, "linear weights 11.06 MiB -> ")) << b.out;  // FP32 bytes of a BF16 checkpoint's layers
  EXPECT_TRUE(has(b.out, " % smaller vs FP32, ")) << b.out;
  const auto a = run_kq({"quantize", "-m", llama.string(), "--mode", "adaptive-r60", "-o", (tmp.path / "a").string(),
                         "--threads", "1"});
  EXPECT_EQ(a.status, 0) << a.err;
  EXPECT_TRUE(has(a.out, " % smaller vs BF16, ")) << a.out;  // an adaptive plan counts the on-disk dtype
}
