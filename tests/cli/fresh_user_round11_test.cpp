// Findings of the round-11 fresh-user test of the installed kq, each re-run
// here: diagnostics to a stderr that cannot be written (full disk, closed)
// aborted kq (SIGABRT, exit 134) from inside its own error handler; a
// mistyped option was reported as a missing required one; a refused --json
// first probed the input folder with a temporary file; options that were
// silently ignored or contradicted.
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <thread>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

/// Exit status of `kq ARGS` with stdout to /dev/null and stderr redirected as
/// `err_redirect` says ("2>/dev/full", "2>&-"); -1 when a signal ended it.
int status_with_stderr(const std::vector<std::string>& args, const std::string& err_redirect) {
  std::string cmd("cd ");
  cmd.append(sh_quote(kq::testing::source_dir().string())).append(" && ").append(sh_quote(KQ_CLI_BINARY));
  for (const std::string& a : args) cmd.append(" ").append(sh_quote(a));
  cmd.append(" </dev/null >/dev/null ").append(err_redirect);
  const int rc = std::system(cmd.c_str());
  return WIFEXITED(rc) && WEXITSTATUS(rc) < 128 ? WEXITSTATUS(rc) : -1;
}

TEST(FreshUserRound11, UnwritableStderrLosesTheMessageNotTheExitStatus) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this machine";
  const std::string m = demo_model().string();
  for (const std::string redirect : {"2>/dev/full", "2>&-"}) {
    SCOPED_TRACE(redirect);
    // A generation that worked: its statistics line cannot be written.
    EXPECT_EQ(status_with_stderr({"generate", "-m", m, "--prompt", "hello", "-n", "3", "--threads", "1"}, redirect), 0);
    // A warning (top-k at temperature 0) on the way.
    EXPECT_EQ(status_with_stderr({"generate", "-m", m, "--prompt", "hi", "-n", "2", "--top-k", "3", "--threads", "1"},
                                 redirect),
              0);
    // An error: the message is lost, the status is the error's.
    EXPECT_EQ(status_with_stderr({"eval", "-m", "/nonexistent-kq-model", "-t", "README.md"}, redirect), 1);
    // A usage error.
    EXPECT_EQ(status_with_stderr({"eval", "--no-such-option"}, redirect), 2);
  }
}

TEST(FreshUserRound11, MistypedOptionIsNamedBeforeMissingRequiredOnes) {
  CliResult r = run_kq({"eval", "--modle", "x", "-t", "README.md"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option --modle for 'kq eval' (did you mean --model?)")) << r.err;
  EXPECT_FALSE(has(r.err, "is required")) << r.err;
  r = run_kq({"generate", "--mdoel=x", "--prompt", "hi"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option --mdoel for 'kq generate' (did you mean --model?)")) << r.err;
  r = run_kq({"generate", "--help-all"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option --help-all")) << r.err;
  // A short option the command does not have (CLI11 said "not expected: 5 -n", reversed).
  r = run_kq({"eval", "-m", demo_model().string(), "-t", "README.md", "-n", "5"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option -n for 'kq eval'")) << r.err;
  // Nothing close: no suggestion. After "--" nothing is an option.
  r = run_kq({"bench", "--zzzzzzzz"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option --zzzzzzzz for 'kq bench'\n")) << r.err;
  r = run_kq({"generate", "-m", demo_model().string(), "-n", "1", "--threads", "1", "--prompt", "x", "--", "--modle"});
  EXPECT_FALSE(has(r.err, "unknown option")) << r.err;
}

TEST(FreshUserRound11, RefusedJsonLeavesTheInputFoldersAlone) {
  namespace fs = std::filesystem;
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  const fs::path text = tmp.path / "t" / "a.txt";
  fs::create_directories(text.parent_path());
  write_text(text, "The king said hello to the queen.");
  const auto m_time = fs::last_write_time(m), t_time = fs::last_write_time(text.parent_path());
  std::this_thread::sleep_for(std::chrono::milliseconds(50));  // a probe file would move the folders' mtimes
  CliResult r = run_kq({"eval", "-m", m.string(), "-t", text.string(), "--json", (m / "config.json").string()});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "is a file of the --model folder")) << r.err;
  r = run_kq({"eval", "-m", m.string(), "-t", text.string(), "--json", text.string()});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "is the --text file")) << r.err;
  EXPECT_EQ(fs::last_write_time(m), m_time);
  EXPECT_EQ(fs::last_write_time(text.parent_path()), t_time);
}

// --json /dev/stdout through a pipe said "cannot create a file in folder
// '/proc/self/fd'"; through a redirect it replaced the shell's file.
TEST(FreshUserRound11, JsonToAStreamPointsToTheDash) {
  for (const char* stream : {"/dev/stdout", "/dev/stderr", "/dev/fd/1", "/proc/self/fd/1"}) {
    const CliResult r = run_kq({"eval", "-m", demo_model().string(), "-t", "README.md", "--json", stream});
    EXPECT_EQ(r.status, 1) << stream << ": " << r.err;
    EXPECT_TRUE(has(r.err, std::string("--json: '") + stream + "' is a stream, not a file; give --json - for standard output"))
        << r.err;
  }
}

TEST(FreshUserRound11, IgnoredOrContradictoryOptionsAreSaid) {
  const std::string m = demo_model().string();
  // An empty --model is a usage error in generate too, as in every other command.
  CliResult r = run_kq({"generate", "-m", "", "--prompt", "hi"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--model: the path is empty")) << r.err;
  // Latency options with --no-latency would be ignored.
  for (const char* opt : {"--runs", "--decode-tokens", "--prompt-tokens"}) {
    r = run_kq({"bench", "-m", m, "--modes", "int8", "--samples", "1", "--no-latency", opt, "3"});
    EXPECT_EQ(r.status, 2) << opt << ": " << r.err;
    EXPECT_TRUE(has(r.err, std::string(opt) + " excludes --no-latency")) << r.err;
  }
  // An option where a mode name is required: said so, not "unknown quantization mode" and the list.
  r = run_kq({"bench", "--modes", "--no-latency"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--modes: expected a mode name, got the option '--no-latency'")) << r.err;
  EXPECT_FALSE(has(r.err, "valid modes")) << r.err;
  // --quantize-lm-head with a --keep that keeps the lm_head: warned.
  TempDir tmp;
  r = run_kq({"quantize", "-m", m, "--mode", "int8", "-o", (tmp.path / "q").string(), "--quantize-lm-head", "--keep",
              "^lm_head$"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "--quantize-lm-head is set, but keep pattern '^lm_head$' keeps the lm_head"))
      << r.err;
}

TEST(FreshUserRound11, HelpCommandIsTheHelpFlag) {
  CliResult r = run_kq({"help"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, run_kq({"--help"}).out);
  r = run_kq({"help", "eval"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, run_kq({"eval", "--help"}).out);
  r = run_kq({"help", "nope"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown command 'nope'")) << r.err;
  r = run_kq({"help", "eval", "bench"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "usage: kq help [COMMAND]")) << r.err;
}

// A generation that fails after the echoed prompt ends its line first: the
// error on stderr read "Hello worldkq: error: ..." on a terminal.
TEST(FreshUserRound11, GenerationErrorEndsTheStreamedLine) {
  namespace fs = std::filesystem;
  TempDir tmp;
  const fs::path m = tmp.path / "m";
  fs::copy(demo_model(), m, fs::copy_options::recursive);
  // ln_f's first output fixed at 3e38 (gain 0, bias 3e38) and wte's first element 3e38: token 0's logit is
  // +inf whatever the input (a -inf logit would be a masked token, not an error).
  poke_first_float(m / "model.safetensors", "transformer.ln_f.weight", 0.0f);
  poke_first_float(m / "model.safetensors", "transformer.ln_f.bias", 3e38f);
  poke_first_float(m / "model.safetensors", "transformer.wte.weight", 3e38f);
  const CliResult r = run_kq({"generate", "-m", m.string(), "--prompt", "Hello world", "-n", "3", "--threads", "1"});
  ASSERT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "non-finite logit")) << r.err;
  EXPECT_EQ(r.out, "Hello world\n");
}

}  // namespace
}  // namespace kq::testing
