// Fresh-user findings on --text: a text too short to score was named by no
// file, and a /proc file (which reports 0 bytes) was read as empty.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace fs = std::filesystem;
using kq::testing::demo_model;
using kq::testing::run_kq;

namespace {

using kq::testing::has;

std::vector<std::string> quick(const std::string& cmd, std::vector<std::string> extra) {
  std::vector<std::string> a{cmd, "--model", demo_model().string(), "--samples", "1", "--threads", "1"};
  if (cmd == "bench") a.insert(a.end(), {"--modes", "int8", "--no-latency"});
  a.insert(a.end(), extra.begin(), extra.end());
  return a;
}

}  // namespace

// A text of fewer than 2 tokens is named by its --text path.
TEST(CliTextFile, TooShortTextNamesTheTextFile) {
  kq::testing::TempDir tmp;
  const fs::path empty = tmp.path / "empty.txt", one = tmp.path / "one.txt";
  std::ofstream(empty).flush();
  std::ofstream(one) << "a";
  for (const char* cmd : {"eval", "bench"}) {
    for (const fs::path& t : {empty, one}) {
      const auto r = run_kq(quick(cmd, {"--text", t.string()}));
      EXPECT_EQ(r.status, 1) << cmd;
      EXPECT_TRUE(has(r.err, "--text '" + t.string() + "': the text has")) << r.err;
      EXPECT_TRUE(has(r.err, "fewer than the 2 needed to score one")) << r.err;
    }
  }
}

// /proc files report a size of 0 but hold text: they are read to their end.
TEST(CliTextFile, ProcFileIsReadToItsEnd) {
  ASSERT_EQ(fs::file_size("/proc/self/status"), 0u) << "the premise: /proc reports 0 bytes";
  const auto r = run_kq(quick("eval", {"--text", "/proc/self/status"}));
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "text:          /proc/self/status (")) << r.out;
  EXPECT_FALSE(has(r.out, "(0 tokens)")) << r.out;
  EXPECT_TRUE(has(r.out, "perplexity:")) << r.out;
}
