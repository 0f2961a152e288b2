// The latency statistic of kq bench (tester27 F1): docs/EVALUATION.md asks for the decode time per generated
// token as the "median of several runs", so the figure is the median over the runs of each run's decode time /
// decoded tokens (the values the spread and the UNSTABLE flag are of), not the median of every single token's
// time pooled over the runs. summarize_latency_runs is a pure function of given times: no timing here.
#include <gtest/gtest.h>

#include <limits>
#include <string>
#include <vector>

#include "common/test_util.hpp"
#include "kq/bench.hpp"
#include "kq/error.hpp"

using namespace kq;

// 5 runs of 32 decoded tokens: the runs' ms/token are 1.0, 3.0, 1.25, 3.125, 1.1875 (two runs slowed by other
// work), the median of those is 1.25 ms/token; prefill: 128 tokens in 10, 20, 40, 12, 30 ms, median 20 ms.
TEST(LatencyMedian, DecodeIsTheMedianOverRunsOfEachRunsTimePerToken) {
  const std::vector<double> prefill = {10, 20, 40, 12, 30};
  const std::vector<double> decode = {32, 96, 40, 100, 38};
  const LatencyResult l = summarize_latency_runs(prefill, decode, 128, 32);
  EXPECT_EQ(l.runs, 5);
  EXPECT_EQ(l.prompt_tokens, 128);
  EXPECT_EQ(l.decode_tokens, 32);
  EXPECT_EQ(l.decode_ms_per_token_runs, (std::vector<double>{1.0, 3.0, 1.25, 3.125, 1.1875}));  // run order
  EXPECT_DOUBLE_EQ(l.decode_ms_per_token, 1.25);
  EXPECT_DOUBLE_EQ(l.decode_tokens_per_s, 800.0);
  EXPECT_EQ(l.prefill_ms_runs, prefill);
  EXPECT_DOUBLE_EQ(l.prefill_ms, 20.0);
  EXPECT_DOUBLE_EQ(l.prefill_tokens_per_s, 6400.0);  // 128 tokens / 0.020 s
  // The spreads are of the same per-run values the medians are taken over.
  EXPECT_DOUBLE_EQ(l.decode_spread, (3.125 - 1.0) / 1.25);
  EXPECT_DOUBLE_EQ(l.prefill_spread, (40.0 - 10.0) / 20.0);
  EXPECT_TRUE(latency_is_unstable(l.decode_ms_per_token_runs));
}

// The statistic is of the runs: a run's time per token is its whole decode over its tokens, so how the time
// fell on the single tokens (a fast majority, a few slow ones) does not move it. tester27's case: runs whose
// every one took 3x the median of the pooled token times read, with a stable spread, 3x faster than they were.
TEST(LatencyMedian, RunsWhoseTokensVaryReportTheirWholeTimePerToken) {
  // Each run: 32 tokens in 40 ms (1.25 ms/token), however split; the figure is 1.25 whatever the pooled median.
  const LatencyResult l = summarize_latency_runs(std::vector<double>{5, 5, 5}, std::vector<double>{40, 40, 40}, 8, 32);
  EXPECT_DOUBLE_EQ(l.decode_ms_per_token, 1.25);
  EXPECT_EQ(l.decode_spread, 0.0);
  EXPECT_FALSE(latency_is_unstable(l.decode_ms_per_token_runs));
}

TEST(LatencyMedian, EvenRunCountTakesTheMeanOfTheMiddleTwo) {
  const LatencyResult l = summarize_latency_runs(std::vector<double>{4, 1, 3, 2}, std::vector<double>{8, 2, 6, 4}, 1, 2);
  EXPECT_DOUBLE_EQ(l.decode_ms_per_token, 2.5);  // the runs' 4, 1, 3, 2 ms/token: (2 + 3) / 2
  EXPECT_DOUBLE_EQ(l.prefill_ms, 2.5);
  EXPECT_DOUBLE_EQ(l.prefill_tokens_per_s, 400.0);
  const LatencyResult one = summarize_latency_runs(std::vector<double>{7}, std::vector<double>{9}, 3, 3);
  EXPECT_DOUBLE_EQ(one.decode_ms_per_token, 3.0);
  EXPECT_DOUBLE_EQ(one.prefill_ms, 7.0);
  EXPECT_EQ(one.decode_spread, 0.0);  // one run: nothing to compare
}

TEST(LatencyMedian, ZeroTimesGiveZeroRatesNotInfinity) {
  const LatencyResult l = summarize_latency_runs(std::vector<double>{0, 0}, std::vector<double>{0, 0}, 4, 4);
  EXPECT_EQ(l.decode_ms_per_token, 0.0);
  EXPECT_EQ(l.decode_tokens_per_s, 0.0);
  EXPECT_EQ(l.prefill_tokens_per_s, 0.0);
}

TEST(LatencyMedian, BadInputIsRefusedByName) {
  const auto msg = [](auto f) {
    try {
      f();
    } catch (const InvalidArgument& e) {
      return std::string(e.what());
    }
    return std::string("(no InvalidArgument)");
  };
  const std::vector<double> two = {1, 2}, three = {1, 2, 3}, none;
  std::string e = msg([&] { summarize_latency_runs(none, none, 8, 4); });
  EXPECT_NE(e.find("summarize_latency_runs: give one prefill and one decode time per run (got 0 prefill and 0"),
            std::string::npos)
      << e;
  e = msg([&] { summarize_latency_runs(two, three, 8, 4); });
  EXPECT_NE(e.find("got 2 prefill and 3 decode times"), std::string::npos) << e;
  e = msg([&] { summarize_latency_runs(two, two, 8, 0); });
  EXPECT_NE(e.find("prompt_tokens and decode_tokens must be positive (got 8, 0)"), std::string::npos) << e;
  e = msg([&] { summarize_latency_runs(two, two, 0, 4); });
  EXPECT_NE(e.find("(got 0, 4)"), std::string::npos) << e;
  const std::vector<double> nan = {1, std::numeric_limits<double>::quiet_NaN()}, negative = {-1, 2};
  e = msg([&] { summarize_latency_runs(two, nan, 8, 4); });
  EXPECT_NE(e.find("run 1's decode time is nan ms"), std::string::npos) << e;
  e = msg([&] { summarize_latency_runs(negative, two, 8, 4); });
  EXPECT_NE(e.find("run 0's prefill time is -1 ms"), std::string::npos) << e;
}
