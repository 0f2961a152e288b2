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
  ASSERT_TRUE(m.at("latency_spread_before").is_number()) << m.dump();
  ASSERT_TRUE(m.at("latency_spread_after").is_number()) << m.dump();
  EXPECT_GE(m["latency_spread_before"].get<double>(), 0.0);
  EXPECT_GE(m["latency_spread_after"].get<double>(), 0.0);
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
  EXPECT_TRUE(jn["results"][0].at("latency_spread_before").is_null());
  EXPECT_TRUE(jn["results"][0].at("latency_unstable").is_null());
}
