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
