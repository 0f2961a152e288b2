// A text report that cannot be written (standard output on /dev/full, closed, or a pipe closed early; standard
// error with `--json -`) does not lose the result the command was asked for: `kq eval` and `kq bench` write
// their --json all the same, `kq quantize` its folder, and the exit status still says standard output failed (1,
// with the message). A pipe closed early is a write error (EPIPE), not the end of kq by SIGPIPE. Standard error
// carries diagnostics: its loss does not change the exit status
// (FreshUserRound11.UnwritableStderrLosesTheMessageNotTheExitStatus).
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <tuple>
#include <vector>

#include "cli/cli_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

/// Runs `kq ARGS REDIRECT` through /bin/sh in the source folder, stdin from /dev/null, stderr to `dir`/err
/// unless REDIRECT redirects it; `pipe_to` (e.g. "true", a reader that exits at once): kq's stdout goes to it
/// through a pipe. The status is kq's own (-1 when a signal ended it: 128 + N from the shell).
CliResult run_redirected(const fs::path& dir, const std::vector<std::string>& args, const std::string& redirect,
                         const std::string& pipe_to = {}) {
  std::string kq(sh_quote(KQ_CLI_BINARY));
  for (const std::string& a : args) kq.append(" ").append(sh_quote(a));
  kq.append(" </dev/null");
  if (redirect.find("2>") == std::string::npos) kq.append(" 2>").append(sh_quote((dir / "err").string()));
  kq.append(" ").append(redirect);
  const std::string status = sh_quote((dir / "status").string());
  std::string cmd("cd ");
  cmd.append(sh_quote(kq::testing::source_dir().string())).append(" && { ").append(kq).append("; echo $? >").append(status).append("; }");
  if (!pipe_to.empty()) cmd.append(" | ").append(pipe_to);
  cmd.append(" >").append(sh_quote((dir / "out").string()));
  (void)std::system(cmd.c_str());
  CliResult r;
  const std::string st = read_all(dir / "status");
  r.status = st.empty() ? -2 : std::atoi(st.c_str());
  if (r.status >= 128) r.status = -1;
  r.out = read_all(dir / "out");
  r.err = fs::exists(dir / "err") ? read_all(dir / "err") : std::string();
  return r;
}

/// The JSON of `file`, or null when it does not exist.
nlohmann::json json_of(const fs::path& file) {
  return fs::exists(file) ? nlohmann::json::parse(read_all(file)) : nlohmann::json();
}

TEST(CliLostReport, EvalWritesItsJsonWhenStdoutFails) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  const std::string model = demo_model().string();
  for (const auto& [redirect, message] : {std::pair<std::string, std::string>{">/dev/full", "No space left on device"},
                                          {">&-", "Bad file descriptor"}}) {
    SCOPED_TRACE(redirect);
    TempDir tmp;
    const fs::path json = tmp.path / "e.json";
    const CliResult r = run_redirected(tmp.path,
                                       {"eval", "-m", model, "--text", "README.md", "--samples", "1", "--ctx", "64",
                                        "--threads", "1", "--json", json.string()},
                                       redirect);
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "kq: error writing to standard output: " + message)) << r.err;
    const nlohmann::json j = json_of(json);
    ASSERT_TRUE(j.is_object()) << "no --json file written; stderr: " << r.err;
    EXPECT_TRUE(j.at("ppl").is_number()) << j;
  }
}

TEST(CliLostReport, BenchWritesItsJsonWhenStdoutIsFullOrThePipeClosesEarly) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  const std::vector<std::string> bench{"bench",   "--modes", "int8",      "int4", "--no-latency", "--samples",
                                       "1",       "--ctx",   "64",        "--threads", "1"};
  {
    TempDir tmp;
    std::vector<std::string> args = bench;
    args.insert(args.end(), {"--json", (tmp.path / "b.json").string()});
    const CliResult r = run_redirected(tmp.path, args, ">/dev/full");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "kq: error writing to standard output: No space left on device")) << r.err;
    const nlohmann::json j = json_of(tmp.path / "b.json");
    ASSERT_TRUE(j.is_object()) << "no --json file written; stderr: " << r.err;
    EXPECT_EQ(j.at("results").size(), 2u) << j;
  }
  {  // `| true`: the reader is gone before the first mode is reported; kq was killed by SIGPIPE (141)
    TempDir tmp;
    std::vector<std::string> args = bench;
    args.insert(args.end(), {"--json", (tmp.path / "b.json").string()});
    const CliResult r = run_redirected(tmp.path, args, "", "true");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "kq: error writing to standard output: Broken pipe")) << r.err;
    const nlohmann::json j = json_of(tmp.path / "b.json");
    ASSERT_TRUE(j.is_object()) << "no --json file written; stderr: " << r.err;
    EXPECT_EQ(j.at("results").size(), 2u) << j;
  }
  {  // Without --json there is nothing left to write: the run stops at the first mode's report.
    TempDir tmp;
    const CliResult r = run_redirected(tmp.path, bench, "", "true");
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "kq: error writing to standard output: Broken pipe")) << r.err;
    EXPECT_FALSE(has(r.err, "int4")) << "went on to the second mode: " << r.err;
  }
}

TEST(CliLostReport, QuantizeWritesItsFolderWhenStdoutFails) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  // awq prints its calibration line before the slow part (flushed: the error stopped the run there, no folder);
  // adaptive its plan.
  for (const std::string mode : {"awq", "adaptive"}) {
    for (const auto& [redirect, pipe_to, message] :
         {std::tuple<std::string, std::string, std::string>{">/dev/full", "", "No space left on device"},
          {"", "true", "Broken pipe"}}) {
      SCOPED_TRACE(mode + " " + redirect + pipe_to);
      TempDir tmp;
      const fs::path out = tmp.path / "q";
      const CliResult r = run_redirected(
          tmp.path, {"quantize", "-m", demo_model().string(), "--mode", mode, "-o", out.string(), "--threads", "1"},
          redirect, pipe_to);
      EXPECT_EQ(r.status, 1) << r.err;
      EXPECT_TRUE(has(r.err, "kq: error writing to standard output: " + message)) << r.err;
      EXPECT_TRUE(fs::exists(out / "config.json")) << "no folder written; stderr: " << r.err;
    }
  }
}

TEST(CliLostReport, JsonOnStdoutIsWrittenWhenTheReportOnStderrFails) {
  if (!fs::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  TempDir tmp;
  // `--json -`: the report goes to standard error (here /dev/full), the JSON to standard output; kq exited 1
  // without printing the JSON.
  const CliResult r = run_redirected(tmp.path,
                                     {"eval", "-m", demo_model().string(), "--text", "README.md", "--samples", "1",
                                      "--ctx", "64", "--threads", "1", "--json", "-"},
                                     "2>/dev/full");
  EXPECT_EQ(r.status, 0);
  ASSERT_TRUE(nlohmann::json::accept(r.out)) << r.out;
  EXPECT_TRUE(nlohmann::json::parse(r.out).at("ppl").is_number()) << r.out;
}

}  // namespace
}  // namespace kq::testing
