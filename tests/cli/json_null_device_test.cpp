// `--json /dev/null` discards the JSON: the null device (a character device 1,3, found by stat, whatever its name)
// is accepted and nothing is written there; every other device stays refused (README, "--json").
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

/// Whether /dev/null is the null device here (a character device 1,3).
bool have_null_device() {
  struct stat st {};
  return ::stat("/dev/null", &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 && minor(st.st_rdev) == 3;
}

TEST(CliJsonNullDevice, DevNullDiscardsTheJson) {
  if (!have_null_device()) GTEST_SKIP() << "no null device at /dev/null";
  const std::string model = demo_model().string();
  TempDir tmp;
  const fs::path link = tmp.path / "discard";
  fs::create_symlink("/dev/null", link);
  for (const std::string& json : {std::string("/dev/null"), link.string()}) {
    SCOPED_TRACE(json);
    const CliResult e = run_kq({"eval", "-m", model, "--text", "README.md", "--samples", "1", "--ctx", "64",
                                "--threads", "1", "--json", json});
    EXPECT_EQ(e.status, 0) << e.err;  // was: "'/dev/null' is a character device, not a regular file", exit 1
    EXPECT_TRUE(has(e.out, "perplexity:")) << e.out;
    EXPECT_FALSE(has(e.out, "wrote")) << e.out;
    EXPECT_TRUE(fs::is_character_file("/dev/null"));
    const CliResult b = run_kq({"bench", "--modes", "int8", "--no-latency", "--samples", "1", "--ctx", "64",
                                "--threads", "1", "--json", json});
    EXPECT_EQ(b.status, 0) << b.err;
    EXPECT_FALSE(has(b.out, "wrote")) << b.out;
  }
  EXPECT_TRUE(fs::is_symlink(link));  // not replaced by a file
  // Standard output on /dev/null too: not refused as "the file standard output writes to".
  const std::string cmd = "cd " + sh_quote(kq::testing::source_dir().string()) + " && " + sh_quote(KQ_CLI_BINARY) + " eval -m " +
                          sh_quote(model) + " --text README.md --samples 1 --ctx 64 --threads 1 --json /dev/null "
                                            "</dev/null >/dev/null 2>" + sh_quote((tmp.path / "err").string());
  const int rc = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 0) << read_all(tmp.path / "err");
}

TEST(CliJsonNullDevice, OtherDevicesAreStillRefused) {
  if (!fs::exists("/dev/zero")) GTEST_SKIP() << "no /dev/zero";
  TempDir tmp;
  const fs::path link = tmp.path / "zero";
  fs::create_symlink("/dev/zero", link);
  for (const std::string& json : {std::string("/dev/zero"), link.string()}) {
    SCOPED_TRACE(json);
    const CliResult r = run_kq({"eval", "-m", demo_model().string(), "--text", "README.md", "--samples", "1",
                                "--ctx", "64", "--json", json});
    EXPECT_EQ(r.status, 1) << r.err;
    EXPECT_TRUE(has(r.err, "character device")) << r.err;
  }
}

}  // namespace
}  // namespace kq::testing
