// Output that cannot be written is an error: a command whose standard output
// is /dev/full (every write fails with ENOSPC) exits 1 and says so, instead of
// exit 0 with the output lost.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::read_all;
using kq::testing::sh_quote;
using kq::testing::TempDir;

namespace {

struct Result {
  int status = -1;
  std::string err;
};

/// Runs `kq ARGS >/dev/full` in the source folder, stderr captured.
Result run_kq_to_dev_full(const std::vector<std::string>& args) {
  TempDir tmp;
  std::string cmd("cd ");
  cmd.append(sh_quote(kq::testing::source_dir().string())).append(" && ").append(sh_quote(KQ_CLI_BINARY));
  for (const std::string& a : args) cmd.append(" ").append(sh_quote(a));
  cmd.append(" </dev/null >/dev/full 2>").append(sh_quote((tmp.path / "err").string()));
  const int rc = std::system(cmd.c_str());
  return {WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, read_all(tmp.path / "err")};
}

}  // namespace

TEST(CliStdout, WriteFailureIsAnError) {
  if (!std::filesystem::exists("/dev/full")) GTEST_SKIP() << "no /dev/full on this system";
  const std::string model = kq::testing::demo_model().string();
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"info"},
           {"--version"},
           {"--help"},
           {"eval", "--help"},
           {"generate", "-m", model, "--prompt", "Hello", "-n", "3"},
           {"generate", "-m", model, "--prompt", "Hello", "-n", "200", "--ignore-eos"},
           {"eval", "-m", model, "--text", "README.md", "--samples", "1", "--ctx", "64"}}) {
    const auto r = run_kq_to_dev_full(args);
    EXPECT_EQ(r.status, 1) << args[0] << ": " << r.err;
    EXPECT_TRUE(r.err.find("kq: error writing to standard output: No space left on device") != std::string::npos)
        << args[0] << ": " << r.err;
  }
}
