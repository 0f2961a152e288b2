// `kq bench --json` holds every number of the printed report (README: it "writes the same numbers"): the text's
// token count, the latency settings, each mode's eval time, the baseline's load time, the "other" bytes, and the
// mean NLL per mode, which still compares the modes when a perplexity overflows to inf (null in the JSON).
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

/// fmt's "{:.2f}" of `v` (the report prints seconds so).
std::string two_decimals(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

/// The report's human_bytes ("1.23 MiB", "456.0 KiB", "12 B") of `b`.
std::string human(size_t b) {
  char buf[64];
  const double v = double(b);
  if (v >= 1024.0 * 1024)
    std::snprintf(buf, sizeof buf, "%.2f MiB", v / (1024.0 * 1024));
  else if (v >= 1024.0)
    std::snprintf(buf, sizeof buf, "%.1f KiB", v / 1024.0);
  else
    std::snprintf(buf, sizeof buf, "%zu B", b);
  return buf;
}

TEST(CliBenchJson, HoldsEveryNumberOfThePrintedReport) {
  TempDir tmp;
  const std::string json = (tmp.path / "b.json").string();
  const CliResult r = run_kq({"bench", "--modes", "int8", "--samples", "2", "--threads", "1", "--runs", "2",
                              "--decode-tokens", "4", "--prompt-tokens", "8", "--json", json});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(read_all(json));
  ASSERT_TRUE(j.at("text_tokens").is_number_integer()) << j.dump();
  EXPECT_TRUE(has(r.out, " (" + std::to_string(j["text_tokens"].get<long>()) + " tokens)\n")) << r.out;
  EXPECT_EQ(j.at("latency_prompt_tokens"), 8);
  EXPECT_EQ(j.at("latency_decode_tokens"), 4);
  EXPECT_EQ(j.at("latency_runs"), 2);
  EXPECT_TRUE(has(r.out, "after a 8-token prompt, 4 tokens per run; median over 2 runs of each run's ms/token\n")) << r.out;
  ASSERT_TRUE(j.at("baseline_load_seconds").is_number()) << j.dump();
  EXPECT_TRUE(has(r.out, "baseline load " + two_decimals(j["baseline_load_seconds"].get<double>()) + " s\n"))
      << r.out;

  const auto& m = j.at("results").at(0);
  ASSERT_TRUE(m.at("eval_seconds").is_number()) << m.dump();
  EXPECT_GT(m["eval_seconds"].get<double>(), 0.0);
  EXPECT_TRUE(has(r.out, "load+quantize " + two_decimals(m.at("load_seconds").get<double>()) + " s, eval " +
                             two_decimals(m["eval_seconds"].get<double>()) + " s, resident "))
      << r.out;
  const size_t other = m.at("other_bytes_after").get<size_t>();
  EXPECT_EQ(other, m.at("weight_bytes_after").get<size_t>() - m.at("linear_bytes_after").get<size_t>());
  EXPECT_TRUE(has(r.out, "  other        " + human(other) + "  (embeddings")) << r.out;
  // ppl = exp(mean NLL) for both models.
  ASSERT_TRUE(m.at("mean_nll_before").is_number()) << m.dump();
  ASSERT_TRUE(m.at("mean_nll_after").is_number()) << m.dump();
  EXPECT_NEAR(std::exp(m["mean_nll_before"].get<double>()), m.at("ppl_before").get<double>(),
              1e-9 * m["ppl_before"].get<double>());
  EXPECT_NEAR(std::exp(m["mean_nll_after"].get<double>()), m.at("ppl_after").get<double>(),
              1e-9 * m["ppl_after"].get<double>());
  // The keys that were there stay.
  for (const char* key : {"ppl_before", "ppl_after", "ppl_delta_pct", "kl_div", "top1_agreement_pct", "load_seconds",
                          "rss_bytes", "latency_ms_before", "latency_ms_after", "speedup", "pass"})
    EXPECT_TRUE(m.contains(key)) << key;

  // Without latency the settings are null, not numbers nobody ran.
  const CliResult n =
      run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--no-latency", "--json", json});
  ASSERT_EQ(n.status, 0) << n.err;
  const auto jn = nlohmann::json::parse(read_all(json));
  EXPECT_TRUE(jn.at("latency_prompt_tokens").is_null());
  EXPECT_TRUE(jn.at("latency_decode_tokens").is_null());
  EXPECT_TRUE(jn.at("latency_runs").is_null());
}

// A perplexity that overflows is inf in the report and null in the JSON; the mean NLL (above 709.78 nats/token)
// is a finite number in both, so the modes can still be compared. The model of
// FreshUserRound12.OverflowedPerplexityIsInfWithDeltaNotApplicableAndANote
// (copy_demo_model_with_overflowing_perplexity).
TEST(CliBenchJson, OverflowedPerplexityKeepsTheMeanNll) {
  TempDir tmp;
  const fs::path model = tmp.path / "m";
  copy_demo_model_with_overflowing_perplexity(model);
  const std::string json = (tmp.path / "b.json").string();
  const CliResult r = run_kq({"bench", "-m", model.string(), "--modes", "int8", "--samples", "1", "--no-latency",
                              "--threads", "1", "--json", json});
  EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;  // the verdict follows the delta of the mean NLLs
  const auto j = nlohmann::json::parse(read_all(json));
  const auto& m = j.at("results").at(0);
  EXPECT_TRUE(m.at("ppl_before").is_null()) << m.dump();
  EXPECT_TRUE(m.at("ppl_after").is_null()) << m.dump();
  ASSERT_TRUE(m.at("mean_nll_before").is_number()) << m.dump();
  ASSERT_TRUE(m.at("mean_nll_after").is_number()) << m.dump();
  const double before = m["mean_nll_before"].get<double>(), after = m["mean_nll_after"].get<double>();
  EXPECT_TRUE(std::isfinite(before) && before > 709.78) << before;
  EXPECT_TRUE(std::isfinite(after) && after > 709.78) << after;
  // Round 15: the delta is the perplexity ratio computed from the mean NLLs, finite though both overflowed.
  ASSERT_TRUE(m.at("ppl_delta_pct").is_number()) << m.dump();
  EXPECT_NEAR(m["ppl_delta_pct"].get<double>(), std::expm1(after - before) * 100, 1e-9) << m.dump();
  EXPECT_EQ(m.at("pass").get<bool>(), r.status == 0) << m.dump();
  char line[128];
  std::snprintf(line, sizeof line, "  mean NLL     %.4f -> %.4f nats/token\n", before, after);
  EXPECT_TRUE(has(r.out, line)) << r.out;
}

// Every per-cent figure of the JSON is a *_pct key in per cent, as the report prints it: top1_agreement and
// latency_spread_before/after were fractions among per-cent ppl_delta_pct and threshold_pct.
TEST(CliBenchJson, PerCentKeysSayTheirUnit) {
  const CliResult r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--ctx", "64", "--runs", "2",
                              "--prompt-tokens", "4", "--decode-tokens", "2", "--threads", "1", "--json", "-"});
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.err;
  const nlohmann::json m = nlohmann::json::parse(r.out).at("results").at(0);
  for (const char* old : {"top1_agreement", "latency_spread_before", "latency_spread_after"})
    EXPECT_FALSE(m.contains(old)) << old;
  const double top1 = m.at("top1_agreement_pct").get<double>();
  EXPECT_GT(top1, 1.0) << "a fraction, not per cent";
  EXPECT_LE(top1, 100.0);
  char line[128];
  std::snprintf(line, sizeof line, "top-1 agreement %.2f %%", top1);
  EXPECT_TRUE(has(r.err, line)) << line << "\n" << r.err;
  std::snprintf(line, sizeof line, "run-to-run spread %.0f %% -> %.0f %%",
                m.at("latency_spread_pct_before").get<double>(), m.at("latency_spread_pct_after").get<double>());
  EXPECT_TRUE(has(r.err, line)) << line << "\n" << r.err;
}

}  // namespace
}  // namespace kq::testing
