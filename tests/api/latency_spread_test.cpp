// Unstable latency in `kq bench` (fresh-user finding: a busy machine gave
// speedups nobody could trust, without a word). The decision is a pure
// function of the runs' times, tested here with given values, not by timing.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "kq/bench.hpp"
#include "kq/model.hpp"

using namespace kq;

TEST(LatencySpread, MaxMinusMinOverMedian) {
  EXPECT_DOUBLE_EQ(relative_spread(std::vector<double>{10, 11, 12}), 2.0 / 11.0);
  EXPECT_DOUBLE_EQ(relative_spread(std::vector<double>{12, 10, 11}), 2.0 / 11.0);  // order does not matter
  EXPECT_DOUBLE_EQ(relative_spread(std::vector<double>{10, 12}), 2.0 / 11.0);  // median of two: their mean
  EXPECT_DOUBLE_EQ(relative_spread(std::vector<double>{1, 10, 10, 10}), 9.0 / 10.0);
  EXPECT_EQ(relative_spread(std::vector<double>{5}), 0.0);  // one run: nothing to compare
  EXPECT_EQ(relative_spread(std::vector<double>{}), 0.0);
  EXPECT_EQ(relative_spread(std::vector<double>{0, 0, 0}), 0.0);
}

TEST(LatencySpread, UnstableAboveTwentyPercent) {
  EXPECT_DOUBLE_EQ(kUnstableLatencySpread, 0.20);
  EXPECT_FALSE(latency_is_unstable(std::vector<double>{1.00, 1.01, 0.99, 1.02, 1.00}));
  EXPECT_FALSE(latency_is_unstable(std::vector<double>{10, 10, 12}));  // exactly 20 %: not above
  EXPECT_TRUE(latency_is_unstable(std::vector<double>{10, 10, 12.1}));
  EXPECT_TRUE(latency_is_unstable(
      std::vector<double>{0.27, 0.26, 0.41, 0.27, 0.28}));  // one run slowed by other work
  EXPECT_FALSE(latency_is_unstable(std::vector<double>{0.41}));
}

// A verdict over one scored token (fresh-user finding) comes with a warning.
TEST(BenchVerdict, FewScoredTokensAreWarned) {
  BenchReport rep;
  EXPECT_EQ(few_scored_tokens_warning(rep), "");  // no mode, no verdict
  rep.results.emplace_back();
  rep.scored_tokens = 1;
  const std::string w = few_scored_tokens_warning(rep);
  EXPECT_NE(w.find("only 1 scored token:"), std::string::npos) << w;
  EXPECT_NE(w.find("BenchOptions::samples"), std::string::npos) << w;
  rep.scored_tokens = kMinScoredTokensForVerdict - 1;
  EXPECT_NE(few_scored_tokens_warning(rep), "");
  rep.scored_tokens = kMinScoredTokensForVerdict;
  EXPECT_EQ(few_scored_tokens_warning(rep), "");
}

// Tester finding: with a wrong baseline (27368a9) kq bench printed PASS for a mode 99 % below it, top-1 agreement
// 5 %, KL 2.8, without a word. PASS / FAIL stay the thresholds'; such a comparison is warned as implausible.
TEST(BenchVerdict, ImplausibleComparisonIsWarned) {
  EXPECT_DOUBLE_EQ(kImplausiblePplDropPct, 5.0);
  EXPECT_DOUBLE_EQ(kImplausibleTop1Agreement, 0.5);
  BenchResult r;
  EXPECT_EQ(implausible_comparison_warning(r), "");  // nothing measured
  r.mode = "int8";
  r.threshold_pct = 2;
  r.ppl_before = 18156.49;
  r.ppl_after = 161.24;
  r.ppl_delta_pct = (r.ppl_after / r.ppl_before - 1) * 100;
  r.pass = true;
  r.top1_agreement = 0.05;
  r.kl_div = 2.8;
  std::string w = implausible_comparison_warning(r);
  EXPECT_EQ(w.rfind("mode int8: implausible comparison with the baseline: perplexity 18156.49 -> 161.24 (-99.11 %), "
                    "top-1 agreement 5.0 %, KL 2.8 nats, but a quantized model is not more than 5 % better than the "
                    "model it approximates, and a mode within its threshold (2 %) agrees with the baseline on most "
                    "top-1 tokens, not under 50 %.",
                    0),
            0u)
      << w;
  EXPECT_NE(w.find("the PASS verdict says nothing here"), std::string::npos) << w;
  // Each condition alone.
  r.top1_agreement = 0.9;
  w = implausible_comparison_warning(r);
  EXPECT_NE(w.find("not more than 5 % better"), std::string::npos) << w;
  EXPECT_EQ(w.find("not under 50 %"), std::string::npos) << w;
  r.ppl_after = 18156.49 * 1.01;
  r.ppl_delta_pct = 1;
  r.top1_agreement = 0.4;
  w = implausible_comparison_warning(r);
  EXPECT_EQ(w.find("better than"), std::string::npos) << w;
  EXPECT_NE(w.find("top-1 agreement 40.0 %"), std::string::npos) << w;
  EXPECT_NE(w.find("not under 50 %"), std::string::npos) << w;
  // Plausible: measured modes (docs/PERFORMANCE.md), a few per cent below by chance, an honest FAIL.
  r.ppl_delta_pct = 0.16;
  r.top1_agreement = 0.972;
  EXPECT_EQ(implausible_comparison_warning(r), "");
  r.ppl_delta_pct = -4.9;
  EXPECT_EQ(implausible_comparison_warning(r), "");
  r.ppl_delta_pct = 40;
  r.pass = false;
  r.top1_agreement = 0.3;
  EXPECT_EQ(implausible_comparison_warning(r), "");
}

TEST(LatencySpread, WarningNamesTheModeAndTheSpreads) {
  BenchResult r;
  r.mode = "int4";
  r.speedup = 1.5;
  r.latency_before.runs = r.latency_after.runs = 5;
  r.latency_before.decode_ms_per_token_runs = {1.0, 1.0, 1.0, 1.0, 1.0};
  r.latency_after.decode_ms_per_token_runs = {0.5, 0.5, 0.5, 0.5, 0.5};
  EXPECT_EQ(latency_stability_warning(r), "");                           // both stable
  r.latency_after.decode_ms_per_token_runs = {0.5, 0.5, 0.7, 0.5, 0.5};  // 40 %
  const std::string w = latency_stability_warning(r);
  EXPECT_NE(w.find("mode int4: unstable latency"), std::string::npos) << w;
  EXPECT_NE(w.find("5 runs spread by 0 % for the baseline and 40 % for int4"), std::string::npos) << w;
  EXPECT_NE(w.find("more than 20 % is unstable"), std::string::npos) << w;
  EXPECT_NE(w.find("1.50x speedup is unreliable"), std::string::npos) << w;
  r.latency_after.decode_ms_per_token_runs = {0.5, 0.5, 0.5, 0.5, 0.5};
  r.latency_before.decode_ms_per_token_runs = {1.0, 1.3, 1.0, 1.0,
                                               1.0};  // the baseline alone: still a warning
  EXPECT_NE(latency_stability_warning(r).find("30 % for the baseline"), std::string::npos);
  EXPECT_EQ(latency_stability_warning(BenchResult{}), "");  // --no-latency
}

// Fresh-user finding: a spread of 0.2026 read "spread by 20 % ... more than 20 %
// is unstable". A value just above the threshold gets the decimals that show it;
// an infinite spread (a run that failed) still reads "inf".
TEST(LatencySpread, ASpreadJustAboveTheThresholdIsPrintedAboveIt) {
  BenchResult r;
  r.mode = "int8";
  r.speedup = 1.0;
  r.latency_before.runs = r.latency_after.runs = 3;
  r.latency_before.decode_ms_per_token_runs = {1.0, 1.0, 1.0};
  r.latency_after.decode_ms_per_token_runs = {1.0, 1.0, 1.2026};
  std::string w = latency_stability_warning(r);
  EXPECT_NE(w.find("spread by 0 % for the baseline and 20.3 % for int8"), std::string::npos) << w;
  r.latency_after.decode_ms_per_token_runs = {1.0, 1.0, 1.20004};
  w = latency_stability_warning(r);
  EXPECT_NE(w.find("and 20.004 % for int8"), std::string::npos) << w;
}

// measure_latency reports every run and the spread of exactly those values
// (structure only: no assertion on how long anything took).
TEST(LatencySpread, MeasureLatencyReportsEachRun) {
  auto m =
      Model::load(kq::testing::demo_model(), ExecContext{Device::CPU, 1});
  LatencyOptions o;
  o.prompt_tokens = 4;
  o.decode_tokens = 3;
  o.runs = 4;
  const std::vector<int32_t> prompt{464, 2068, 100, 200};
  const auto res = measure_latency({m.get()}, prompt, o);
  ASSERT_EQ(res.size(), 1u);
  ASSERT_EQ(res[0].decode_ms_per_token_runs.size(), 4u);
  for (double v : res[0].decode_ms_per_token_runs) EXPECT_GT(v, 0.0);
  EXPECT_DOUBLE_EQ(res[0].decode_spread, relative_spread(res[0].decode_ms_per_token_runs));
}
