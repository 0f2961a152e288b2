// Option values `kq` refuses with a usage error (exit 2) naming the option and
// what is wrong with the value (fresh-user findings).
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::demo_model;
using kq::testing::run_kq;

namespace {

using kq::testing::has;

/// A command line (without the option under test) and one integer option it takes.
struct IntegerOption {
  std::vector<std::string> command;
  std::string option;
};

/// Every integer option of every command, each with the arguments its command requires.
std::vector<IntegerOption> integer_options() {
  const std::string m = demo_model().string(), t = (demo_model() / "demo-eval.txt").string();
  const std::vector<std::string> eval{"eval", "--model", m, "--text", t};
  const std::vector<std::string> bench{"bench"};
  const std::vector<std::string> generate{"generate", "--model", m, "--prompt", "hi"};
  const std::vector<std::string> quantize{"quantize", "--model",       m, "--mode", "int8",
                                          "--out",    "/nonexistent/q"};
  return {{eval, "--ctx"},
          {eval, "--samples"},
          {eval, "--threads"},
          {bench, "--ctx"},
          {bench, "--samples"},
          {bench, "--threads"},
          {bench, "--runs"},
          {bench, "--decode-tokens"},
          {bench, "--prompt-tokens"},
          {generate, "--threads"},
          {generate, "--max-new-tokens"},
          {generate, "--top-k"},
          {generate, "--seed"},
          {quantize, "--threads"}};
}

kq::testing::CliResult run_with(const IntegerOption& o, const std::string& value) {
  std::vector<std::string> args = o.command;
  args.push_back(o.option);
  args.push_back(value);
  return run_kq(args);
}

}  // namespace

// "--ctx abc" said "Value abc not in range 0 to 1073741824".
TEST(CliOptions, IntegerOptionGivenANonNumberSaysSoNamingTheOption) {
  for (const IntegerOption& o : integer_options()) {
    const auto r = run_with(o, "abc");
    EXPECT_EQ(r.status, 2) << o.command[0] << " " << o.option << ": " << r.err;
    EXPECT_TRUE(has(r.err, o.option + ": 'abc' is not a number (expected an integer in [")) << r.err;
    EXPECT_FALSE(has(r.err, "not in range")) << r.err;
    const auto f = run_with(o, "1.5");
    EXPECT_EQ(f.status, 2) << o.command[0] << " " << o.option << ": " << f.err;
    EXPECT_TRUE(has(f.err, o.option + ": '1.5' is not an integer")) << f.err;
  }
  // A number outside the range is still called that.
  const auto r = run_kq({"eval", "--model", demo_model().string(), "--text", "t", "--ctx", "-5"});
  EXPECT_EQ(r.status, 2);
  // (in the range the help gives: 1 is not a window, and the message said [0, 1073741824])
  EXPECT_TRUE(has(r.err, "--ctx: '-5' is out of range (expected an integer in [2, 1073741824] or 0 (the model's "
                         "context length))"))
      << r.err;
  // The help text still shows the range.
  EXPECT_TRUE(has(run_kq({"bench", "--help"}).out, "--runs INT:INT in [1 - 1073741824]=5"));
}

// --seed -1 and --seed 2^64 were taken silently (CLI11's strtoull wraps -1 to
// 2^64-1 and clamps larger values); the seed is a uint64 (std::mt19937_64).
TEST(CliOptions, SeedOutsideUint64IsAUsageErrorNamingSeed) {
  const std::vector<std::string> base{"generate", "--model", demo_model().string(), "--prompt", "hi",
                                      "-n",       "1",       "--threads",           "1"};
  for (const char* bad : {"-1", "18446744073709551616", "99999999999999999999999"}) {
    auto args = base;
    args.insert(args.end(), {"--seed", bad});
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 2) << bad << ": " << r.err;
    EXPECT_TRUE(has(r.err, std::string("--seed: '") + bad +
                               "' is out of range (expected an integer in [0, 18446744073709551615])"))
        << r.err;
    EXPECT_FALSE(has(r.out, "hi")) << "generated with a bad seed: " << r.out;
  }
  auto args = base;
  args.insert(args.end(), {"--seed", "18446744073709551615", "--temperature", "1"});
  const auto r = run_kq(args);
  EXPECT_EQ(r.status, 0) << r.err;  // the largest seed is fine
}

// "--text -" and "--text /dev/zero" were reported as "not found". Standard
// input is not read (documented in --help); a folder, a device or a FIFO is
// named for what it is, and nothing is opened (a FIFO or /dev/zero would hang).
TEST(CliOptions, TextThatIsNotARegularFileSaysWhatItIs) {
  kq::testing::TempDir tmp;
  const std::string fifo = (tmp.path / "pipe").string();
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string m = demo_model().string();
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"-", "--text: '-': reading the text from standard input is not supported"},
      {"/dev/zero", "--text: '/dev/zero' is a character device, not a regular file"},
      {tmp.path.string(), "--text: '" + tmp.path.string() + "' is a directory, not a file"},
      {fifo, "--text: '" + fifo + "' is a FIFO (named pipe), not a regular file"},
      {(tmp.path / "missing.txt").string(),
       "--text: '" + (tmp.path / "missing.txt").string() + "' not found"}};
  for (const auto& [text, want] : cases) {
    for (const std::vector<std::string>& cmd :
         {std::vector<std::string>{"eval", "--model", m, "--text", text, "--quiet"},
          std::vector<std::string>{"bench", "--modes", "int8", "--no-latency", "--text", text}}) {
      const auto r = run_kq(cmd);
      // '-' is a malformed value, a usage error (exit 2; tester round 21, finding 6: it was 1); the others
      // name a file that is not there or not readable as one (1).
      EXPECT_EQ(r.status, text == "-" ? 2 : 1) << cmd[0] << " --text " << text << ": " << r.err;
      EXPECT_TRUE(has(r.err, want)) << cmd[0] << ": " << r.err;
    }
  }
  // --calibration (kq quantize, kq bench) follows the same rule.
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"quantize", "-m", m, "--mode", "awq", "-o", (tmp.path / "q").string(),
                                 "--calibration", "-"},
        std::vector<std::string>{"bench", "--modes", "awq", "--no-latency", "--calibration", "-"}}) {
    const auto r = run_kq(cmd);
    EXPECT_EQ(r.status, 2) << cmd[0] << ": " << r.err;
    EXPECT_TRUE(has(r.err, "--calibration: '-': reading the text from standard input is not supported"))
        << cmd[0] << ": " << r.err;
  }
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "q"));
  EXPECT_TRUE(has(run_kq({"eval", "--help"}).out, "standard input is not read")) << "eval --help";
  EXPECT_TRUE(has(run_kq({"bench", "--help"}).out, "standard input is not read")) << "bench --help";
}
