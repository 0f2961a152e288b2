// `kq eval --json` gives the model's shape that the report's "model:" line prints (layers, hidden size,
// vocabulary), as config.json has it.
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <nlohmann/json.hpp>
#include <string>

#include "cli/cli_util.hpp"

namespace kq::testing {
namespace {

TEST(CliEvalJson, HoldsTheModelShapeOfTheReport) {
  const CliResult r = run_kq({"eval", "-m", demo_model().string(), "--text", "README.md", "--samples", "1", "--ctx",
                              "64", "--threads", "1", "--json", "-"});
  ASSERT_EQ(r.status, 0) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const nlohmann::json cfg = nlohmann::json::parse(read_all(demo_model() / "config.json"));
  ASSERT_TRUE(j.contains("num_layers")) << j;
  EXPECT_EQ(j["num_layers"], cfg.at("n_layer"));
  EXPECT_EQ(j.at("hidden_size"), cfg.at("n_embd"));
  EXPECT_EQ(j.at("vocab_size"), cfg.at("vocab_size"));
  // The report (standard error with --json -) prints the same figures.
  EXPECT_TRUE(has(r.err, fmt::format("{} layers, hidden {}, vocab {})", j["num_layers"].get<int>(),
                                     j["hidden_size"].get<int>(), j["vocab_size"].get<int>())))
      << r.err;
}

}  // namespace
}  // namespace kq::testing
