// `kq` usage errors and help texts (items a fresh user tripped on).
#include <gtest/gtest.h>

#include <cstdlib>
#include <regex>
#include <string>

#include "cli/cli_util.hpp"

using kq::testing::run_kq;
using kq::testing::has;

TEST(CliUsage, UnknownCommandIsNamedAndIsAUsageError) {
  const auto r = run_kq({"foo"});
  EXPECT_EQ(r.status, 2);
  EXPECT_NE(r.err.find("unknown command 'foo'"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("kq --help"), std::string::npos) << r.err;
  for (const char* c : {"info", "eval", "generate", "quantize", "bench"})
    EXPECT_NE(r.err.find(c), std::string::npos) << "command list lacks " << c << ": " << r.err;
  EXPECT_EQ(r.err.find("A subcommand is required"), std::string::npos) << r.err;
  // An option before the command is named as such, not taken for a command.
  const auto r2 = run_kq({"--threads", "4", "bench"});
  EXPECT_EQ(r2.status, 2);
  EXPECT_FALSE(has(r2.err, "unknown command")) << r2.err;
  EXPECT_TRUE(has(r2.err, "--threads")) << r2.err;
}

TEST(CliUsage, EveryUsageErrorHasTheSameExitStatus) {
  EXPECT_EQ(run_kq({}).status, 2);                           // no command
  EXPECT_EQ(run_kq({"eval"}).status, 2);                     // missing required option
  EXPECT_EQ(run_kq({"bench", "--bogus"}).status, 2);         // unknown option
  EXPECT_EQ(run_kq({"bench", "--runs", "zero"}).status, 2);  // not a number
  EXPECT_EQ(run_kq({"eval", "--model", "m", "--text", "t", "--ctx", "-5"}).status, 2);  // out of range
  // Unknown or repeated quantization modes, before any work.
  const auto unknown = run_kq({"bench", "--modes", "int8", "int3"});
  EXPECT_EQ(unknown.status, 2);
  EXPECT_TRUE(has(unknown.err, "--modes") && has(unknown.err, "'int3'")) << unknown.err;
  EXPECT_TRUE(has(unknown.err, "int4 (")) << "the default mode is listed: " << unknown.err;
  const auto twice = run_kq({"bench", "--modes", "int4", "nf4"});
  EXPECT_EQ(twice.status, 2);
  EXPECT_TRUE(has(twice.err, "same mode")) << twice.err;
  EXPECT_EQ(run_kq({"quantize", "--model", "m", "--mode", "int3", "--out", "o"}).status, 2);
  // Help and version are not errors; a bad model folder is an input error (1), not a usage error.
  EXPECT_EQ(run_kq({"--help"}).status, 0);
  EXPECT_EQ(run_kq({"--version"}).status, 0);
  EXPECT_EQ(run_kq({"eval", "--model", "/nonexistent", "--text", "README.md"}).status, 1);
}

TEST(CliUsage, EvalHelpShowsTheDefaultOfEveryValueOption) {
  const auto r = run_kq({"eval", "--help"});
  ASSERT_EQ(r.status, 0);
  // CLI11 prints a default as "=VALUE" after the type.
  for (const char* opt : {"--ctx", "--samples", "--threads", "--device"}) {
    std::string pattern(opt);
    pattern.append(" [A-Z]+[^\\n]*=[^ \\n]+");
    const std::regex with_default(pattern);
    EXPECT_TRUE(std::regex_search(r.out, with_default)) << opt << " has no default in:\n" << r.out;
  }
  EXPECT_NE(r.out.find("--samples INT:INT in [0 - 1073741824]=0"), std::string::npos) << r.out;
}

TEST(CliUsage, GenerateHelpShowsDefaults) {
  const auto r = run_kq({"generate", "--help"});
  ASSERT_EQ(r.status, 0);
  for (const char* opt : {"--max-new-tokens", "--temperature", "--top-k", "--top-p", "--seed", "--threads"}) {
    std::string pattern(opt);
    pattern.append(" [A-Z]+[^\\n]*=[^ \\n]+");
    const std::regex with_default(pattern);
    EXPECT_TRUE(std::regex_search(r.out, with_default)) << opt << " has no default in:\n" << r.out;
  }
}

// kq waits passively between OpenMP regions unless the user chose otherwise
// (spinning threads made decode ~100x slower on a busy machine).
TEST(CliUsage, OpenMpWaitPolicyDefaultsToPassive) {
  const char* saved = std::getenv("OMP_WAIT_POLICY");
  const std::string keep = saved ? saved : "";
  ::unsetenv("OMP_WAIT_POLICY");
  const auto r = run_kq({"info"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "OpenMP wait policy PASSIVE")) << r.out;
  ::setenv("OMP_WAIT_POLICY", "ACTIVE", 1);
  const auto a = run_kq({"info"});
  EXPECT_TRUE(has(a.out, "OpenMP wait policy ACTIVE")) << a.out;
  if (saved)
    ::setenv("OMP_WAIT_POLICY", keep.c_str(), 1);
  else
    ::unsetenv("OMP_WAIT_POLICY");
}

// New-user findings, small messages. `kq --bogus` said "A subcommand is
// required"; `kq` alone printed only that line; kq help was not listed.
TEST(CliUsage, NoCommandOrAnOptionFirstIsExplained) {
  auto r = run_kq({"--bogus"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "kq: error: unknown option --bogus for 'kq'")) << r.err;
  EXPECT_FALSE(has(r.err, "A subcommand is required")) << r.err;
  r = run_kq({"--bogus=1", "eval"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "unknown option --bogus for 'kq'")) << r.err;
  r = run_kq({});
  EXPECT_EQ(r.status, 2);
  for (const char* c : {"info", "eval", "generate", "quantize", "bench", "help"})
    EXPECT_TRUE(has(r.err, std::string("\n  ") + c + " ")) << "command list lacks " << c << ": " << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: no command given")) << r.err;
  EXPECT_FALSE(has(r.err, "A subcommand is required")) << r.err;
  // kq help is listed with the commands, and still works.
  r = run_kq({"--help"});
  EXPECT_EQ(r.status, 0);
  EXPECT_TRUE(std::regex_search(r.out, std::regex("\n  help +Show this help, or a command's options: kq help "
                                                  "\\[COMMAND\\]")))
      << r.out;
  EXPECT_EQ(run_kq({"help"}).out, r.out);
  EXPECT_EQ(run_kq({"-h"}).status, 0);
  EXPECT_EQ(run_kq({"help", "eval"}).out, run_kq({"eval", "--help"}).out);
}

// An empty --text / --json said "give a file or folder", though a folder is
// refused for both.
TEST(CliUsage, EmptyPathSaysWhatToGive) {
  const std::string m = kq::testing::demo_model().string();
  auto r = run_kq({"eval", "-m", m, "-t", ""});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "the path is empty; give a file\n")) << r.err;
  r = run_kq({"eval", "-m", m, "-t", "README.md", "--json", ""});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "the path is empty; give a file\n")) << r.err;
  r = run_kq({"bench", "--calibration", ""});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "the path is empty; give a file\n")) << r.err;
  r = run_kq({"eval", "-m", "", "-t", "README.md"});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "the path is empty; give a folder\n")) << r.err;
  r = run_kq({"quantize", "-m", m, "--mode", "int8", "-o", ""});
  EXPECT_EQ(r.status, 2);
  EXPECT_TRUE(has(r.err, "the path is empty; give a folder\n")) << r.err;
}

// --ctx 1 is out of range for every model (a window of one token scores
// nothing): a usage error (2), as the README's exit-status table says, not 1.
TEST(CliUsage, CtxOneIsAUsageError) {
  const std::string m = kq::testing::demo_model().string();
  for (const char* cmd : {"eval", "bench"}) {
    const auto r = run_kq({cmd, "-m", m, "-t", "README.md", "--ctx", "1"});
    EXPECT_EQ(r.status, 2) << cmd << ": " << r.err;
    EXPECT_TRUE(has(r.err, "--ctx: '1' is out of range: a window of 1 token scores nothing")) << r.err;
  }
  EXPECT_EQ(run_kq({"eval", "-m", m, "-t", "README.md", "--ctx", "2", "--samples", "1", "--quiet"}).status, 0);
}

// With --runs 1 there is no run-to-run spread to measure: it read "0 %".
TEST(CliUsage, BenchSpreadOfOneRunIsNotAvailable) {
  const auto r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--ctx", "16", "--runs", "1",
                         "--prompt-tokens", "4", "--decode-tokens", "2", "--threads", "1", "--json", "-"});
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.err;
  EXPECT_TRUE(has(r.err, "run-to-run spread n/a (1 run)")) << r.err;
  EXPECT_FALSE(has(r.err, "spread 0 %")) << r.err;
  const nlohmann::json j = nlohmann::json::parse(r.out);
  const nlohmann::json& x = j["results"][0];
  EXPECT_TRUE(x["latency_spread_pct_before"].is_null()) << x;
  EXPECT_TRUE(x["latency_spread_pct_after"].is_null()) << x;
  EXPECT_TRUE(x["latency_unstable"].is_null()) << x;
  EXPECT_TRUE(x["latency_ms_before"].is_number()) << x;
  const auto two = run_kq({"bench", "--modes", "int8", "--samples", "1", "--ctx", "16", "--runs", "2",
                           "--prompt-tokens", "4", "--decode-tokens", "2", "--threads", "1", "--json", "-"});
  ASSERT_TRUE(two.status == 0 || two.status == 3) << two.err;
  EXPECT_TRUE(nlohmann::json::parse(two.out)["results"][0]["latency_spread_pct_before"].is_number());
}

// libgomp ignores an OMP_WAIT_POLICY that is not ACTIVE or PASSIVE (any case,
// blanks around): kq info reported "OpenMP wait policy garbage" as if in effect.
TEST(CliUsage, InvalidOpenMpWaitPolicyIsReplacedByPassiveWithAWarning) {
  {
    // The OpenMP runtime ignores such a value and spins as if it were unset:
    // kq uses its PASSIVE default instead, and says so once.
    kq::testing::ScopedEnv env("OMP_WAIT_POLICY", "garbage");
    const auto r = run_kq({"info"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_TRUE(has(r.out, "OpenMP wait policy PASSIVE;")) << r.out;
    EXPECT_TRUE(has(r.err, "kq: warning: OMP_WAIT_POLICY=garbage is not ACTIVE or PASSIVE")) << r.err;
    EXPECT_EQ(r.err.find("warning"), r.err.rfind("warning")) << r.err;
  }
  kq::testing::ScopedEnv env("OMP_WAIT_POLICY", " passive");
  const auto r = run_kq({"info"});
  EXPECT_TRUE(has(r.out, "OpenMP wait policy PASSIVE;")) << r.out;
  EXPECT_EQ(r.err.find("OMP_WAIT_POLICY"), std::string::npos) << r.err;
}

// --overwrite's refusals were documented nowhere a user looks first.
TEST(CliUsage, QuantizeHelpSaysWhatOverwriteRefuses) {
  const auto r = run_kq({"quantize", "--help"});
  ASSERT_EQ(r.status, 0);
  for (const char* s : {"only a folder kq quantize wrote", "without config.json", "no kq quantization_config",
                        "holding files kq quantize does not write is refused"})
    EXPECT_TRUE(has(r.out, s)) << s << " missing in:\n" << r.out;
}
