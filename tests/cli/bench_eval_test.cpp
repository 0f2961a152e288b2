// `kq bench` and `kq eval` outputs added for fresh-user findings: the
// run-to-run latency spread in --json, and --special-tokens for the text.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::run_kq;

// The spread of the latency runs is in --json (null without latency); whether
// a mode is flagged depends on the machine, so only the form is checked here
// (the decision itself: tests/api/latency_spread_test.cpp).
TEST(CliBench, JsonHasTheLatencySpreadOfEachMode) {
  kq::testing::TempDir tmp;
  const std::string json = (tmp.path / "b.json").string();
  const auto r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--runs", "3",
                         "--decode-tokens", "4", "--prompt-tokens", "8", "--json", json});
  ASSERT_EQ(r.status, 0) << r.err;
  const auto j = nlohmann::json::parse(kq::testing::read_all(json));
  const auto& m = j.at("results").at(0);
  ASSERT_TRUE(m.at("latency_spread_pct_before").is_number()) << m.dump();
  ASSERT_TRUE(m.at("latency_spread_pct_after").is_number()) << m.dump();
  EXPECT_GE(m["latency_spread_pct_before"].get<double>(), 0.0);
  EXPECT_GE(m["latency_spread_pct_after"].get<double>(), 0.0);
  ASSERT_TRUE(m.at("latency_unstable").is_boolean()) << m.dump();
  // Flagged in --json exactly when a warning naming the mode was printed.
  EXPECT_EQ(m["latency_unstable"].get<bool>(),
            r.err.find("kq: warning: mode int8: unstable latency") != std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("run-to-run spread"), std::string::npos) << r.out;

  const auto n = run_kq(
      {"bench", "--modes", "int8", "--samples", "1", "--threads", "1", "--no-latency", "--json", json});
  ASSERT_EQ(n.status, 0) << n.err;
  const auto jn = nlohmann::json::parse(kq::testing::read_all(json));
  EXPECT_TRUE(jn["results"][0].at("latency_spread_pct_before").is_null());
  EXPECT_TRUE(jn["results"][0].at("latency_unstable").is_null());
}

namespace {

/// The "(N tokens)" count `kq eval` or `kq bench` printed for the text, or -1.
long text_tokens(const std::string& out) {
  const size_t at = out.find(" tokens)\n");
  if (at == std::string::npos) return -1;
  const size_t open = out.rfind('(', at);
  return open == std::string::npos ? -1 : std::stol(out.substr(open + 1, at - open - 1));
}

}  // namespace

// <|endoftext|> in an evaluation text stays raw text by default (as in
// `kq generate`) and becomes its one id with --special-tokens.
TEST(CliBench, SpecialTokensInTheTextOnlyWhenAsked) {
  kq::testing::TempDir tmp;
  const std::string text = (tmp.path / "t.txt").string();
  {
    std::ofstream f(text);
    for (int i = 0; i < 10; ++i) f << "The story ends here.<|endoftext|>A new one begins. ";
  }
  const std::vector<std::string> eval{"eval", "--model", demo_model().string(), "--text",
                                      text,   "--quiet", "--threads",           "1"};
  const std::vector<std::string> bench{"bench",  "--modes", "int8",      "--samples", "1",
                                       "--text", text,      "--threads", "1",         "--no-latency"};
  for (const auto& base : {eval, bench}) {
    const auto raw = run_kq(base);
    ASSERT_EQ(raw.status, 0) << raw.err;
    auto args = base;
    args.push_back("--special-tokens");
    const auto special = run_kq(args);
    ASSERT_EQ(special.status, 0) << special.err;
    const long n_raw = text_tokens(raw.out), n_special = text_tokens(special.out);
    ASSERT_GT(n_raw, 0) << raw.out;
    // Each of the 10 occurrences (all in the same context) is several tokens of raw text or the
    // one special token: the counts differ by the same amount per occurrence.
    EXPECT_LT(n_special, n_raw) << raw.out << special.out;
    EXPECT_EQ((n_raw - n_special) % 10, 0) << n_raw << " vs " << n_special;
    EXPECT_NE(run_kq({base[0], "--help"}).out.find("--special-tokens"), std::string::npos) << base[0];
  }
}
