// New-user finding: a value starting with '-' was taken for an unknown option
// by kq's own scan for unknown options (run before CLI11, which reads such a
// value correctly): `--prompt "-- Robert Frost"`, `--prompt -x`, `-t "--
// notes.txt"` were refused, while `--prompt -n` and `--prompt --help` were
// taken as the prompt. The argument right after an option that takes a value
// is its value, whatever it starts with.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

TEST(CliOptionValue, PromptStartingWithADashIsThePrompt) {
  const std::string m = demo_model().string();
  for (const std::string prompt : {"-- Robert Frost", "---", "-x", "-n", "--help", "--modle", "--"}) {
    SCOPED_TRACE(prompt);
    const CliResult r = run_kq({"generate", "-m", m, "--prompt", prompt, "-n", "1", "--threads", "1"});
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out.rfind(prompt, 0), 0u) << "the prompt is echoed first: " << r.out;
    EXPECT_FALSE(has(r.err, "unknown option")) << r.err;
  }
  // A short option's value too (-n's value is checked as a number, not taken for an option).
  CliResult r = run_kq({"generate", "-m", m, "--prompt", "hi", "-n", "-x"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "'-x' is not a number")) << r.err;
  // An unknown option after a value is still named; a flag takes no value.
  r = run_kq({"generate", "-m", m, "--prompt", "-x", "--modle", "y"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option --modle for 'kq generate' (did you mean --model?)")) << r.err;
  r = run_kq({"generate", "-m", m, "--no-echo", "-x", "--prompt", "hi"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "unknown option -x for 'kq generate'")) << r.err;
}

TEST(CliOptionValue, PathsStartingWithADashAreThePaths) {
  TempDir tmp;
  fs::copy_file(demo_model() / "demo-eval.txt", tmp.path / "-- notes.txt");
  fs::copy(demo_model(), tmp.path / "-m", fs::copy_options::recursive);
  const CliResult r = run_kq_in(tmp.path, {"eval", "-m", "-m", "-t", "-- notes.txt", "--samples", "1", "--ctx", "16",
                                           "--threads", "1", "--quiet", "--json", "-j.json"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "text:          -- notes.txt")) << r.out;
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "-j.json"));
  const CliResult q = run_kq_in(tmp.path, {"quantize", "-m", "-m", "--mode", "int8", "-o", "-q", "--threads", "1"});
  EXPECT_EQ(q.status, 0) << q.err;
  EXPECT_TRUE(fs::is_regular_file(tmp.path / "-q" / "config.json"));
}

}  // namespace
}  // namespace kq::testing
