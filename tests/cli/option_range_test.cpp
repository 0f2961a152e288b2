// Out-of-range option values are usage errors (exit status 2) for every
// option alike, found while the command line is parsed (before any model is
// loaded), the help shows the range enforced, and usage errors start with
// "kq: error:" like every other error. --temperature, --top-p and --threads
// gave 1 while --top-k and --ctx gave 2, and --threads' help said
// [0 - 1073741824] while [0, 1024] was enforced.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::run_kq;
using kq::testing::has;

TEST(CliOptionRange, OutOfRangeValuesAreUsageErrors) {
  struct Case {
    std::string option, value;
  };
  const std::vector<Case> cases = {
      {"--temperature", "-1"},  {"--temperature", "nan"}, {"--temperature", "inf"},
      {"--temperature", "1e39"}, {"--temperature", "abc"}, {"--top-p", "0"},
      {"--top-p", "1.5"},       {"--top-p", "nan"},       {"--top-p", "-0.5"},
      {"--top-k", "-1"},        {"--threads", "1000000"}, {"--threads", "1025"},
      {"--threads", "-1"},
  };
  for (const Case& c : cases) {
    // A model folder that does not exist: a value checked only at load would give 1.
    const auto r = run_kq({"generate", "--model", "/nonexistent-model", "--prompt", "hi", c.option, c.value});
    EXPECT_EQ(r.status, 2) << c.option << " " << c.value << ": " << r.err;
    EXPECT_TRUE(r.err.starts_with("kq: error: ")) << r.err;
    EXPECT_TRUE(has(r.err, c.option) && has(r.err, "'" + c.value + "'")) << r.err;
  }
  for (const char* cmd : {"eval", "bench"}) {
    const auto r = run_kq({cmd, "--model", "/nonexistent-model", "--text", "README.md", "--threads", "1000000"});
    EXPECT_EQ(r.status, 2) << cmd << ": " << r.err;
    EXPECT_TRUE(has(r.err, "--threads") && has(r.err, "[0, 1024]")) << r.err;
  }
  const auto q = run_kq({"quantize", "--model", "m", "--mode", "int8", "--out", "o", "--threads", "2000"});
  EXPECT_EQ(q.status, 2) << q.err;
}

// Tester round 18, finding 4: the range was checked as a double and again,
// by the sampler, as the float the option holds: --top-p 1e-50 (a float 0)
// passed the first check and failed the second with exit 1 and "got 0". Now a
// usage error naming the value given and what it rounds to. --temperature
// 1e-46 rounds to 0, which is in range: greedy, with --temperature 0's
// warning about --top-k.
TEST(CliOptionRange, ValuesAreCheckedAsTheFloatTheOptionHolds) {
  for (const char* v : {"1e-50", "1e-46", "-0"}) {
    const auto r = run_kq({"generate", "--model", "/nonexistent-model", "--prompt", "hi", "--top-p", v});
    EXPECT_EQ(r.status, 2) << v << ": " << r.err;
    EXPECT_TRUE(has(r.err, std::string("--top-p: '") + v + "' is out of range (expected a finite number in (0, 1]"))
        << r.err;
  }
  const auto tiny = run_kq({"generate", "--model", "/nonexistent-model", "--prompt", "hi", "--top-p", "1e-50"});
  EXPECT_TRUE(has(tiny.err, "as a float it is 0)")) << tiny.err;
  const auto t = run_kq({"generate", "--model", demo_model().string(), "--prompt", "The", "-n", "2", "--threads", "1",
                         "--temperature", "1e-46", "--top-k", "5"});
  const auto z = run_kq({"generate", "--model", demo_model().string(), "--prompt", "The", "-n", "2", "--threads", "1",
                         "--temperature", "0", "--top-k", "5"});
  ASSERT_EQ(t.status, 0) << t.err;
  ASSERT_EQ(z.status, 0) << z.err;
  EXPECT_EQ(t.out, z.out);
  EXPECT_TRUE(has(t.err, "--top-k has no effect at --temperature 0")) << t.err;
}

TEST(CliOptionRange, InRangeValuesStillWork) {
  const auto r = run_kq({"generate", "--model", demo_model().string(), "--prompt", "The", "-n", "2", "--threads",
                         "1024", "--temperature", "+0.7", "--top-p", "1", "--seed", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  const auto g = run_kq({"generate", "--model", demo_model().string(), "--prompt", "The", "-n", "2", "--threads",
                         "1", "--temperature", "0", "--top-p", "1e-3"});
  EXPECT_EQ(g.status, 0) << g.err;
}

TEST(CliOptionRange, HelpShowsTheRangeEnforced) {
  const auto g = run_kq({"generate", "--help"});
  ASSERT_EQ(g.status, 0);
  EXPECT_TRUE(has(g.out, "--temperature FLOAT:FLOAT in [0, 3.4028234663852886e+38]")) << g.out;
  EXPECT_TRUE(has(g.out, "--top-p FLOAT:FLOAT in (0, 1]")) << g.out;
  for (const char* cmd : {"generate", "eval", "bench", "quantize"}) {
    const auto h = run_kq({cmd, "--help"});
    EXPECT_TRUE(has(h.out, "--threads INT:INT in [0 - 1024]")) << cmd << ": " << h.out;
  }
}

TEST(CliOptionRange, UsageErrorsHaveTheErrorPrefix) {
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"eval"}, {"bench", "--bogus"}, {"eval", "--model", "m", "--text", "t", "--ctx", "-5"}}) {
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 2) << args[0];
    EXPECT_TRUE(r.err.starts_with("kq: error: ")) << r.err;
  }
}
