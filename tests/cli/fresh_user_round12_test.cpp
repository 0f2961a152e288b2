// Findings of the round-12 fresh-user test of the installed kq (README only),
// each re-run here: file and folder names that are not UTF-8 ended kq with an
// internal error after all the work (the JSON writer threw); a --keep pattern
// that is not UTF-8 likewise.
#include <gtest/gtest.h>

#include <filesystem>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

TEST(FreshUserRound12, NonUtf8NamesAreWrittenToJsonWithReplacementCharacters) {
  TempDir tmp;
  const std::string bad_text = "bad\xffname.txt";
  write_text(tmp.path / bad_text, "hello world, this is a test of a name.\n");
  CliResult r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", bad_text, "--json", "o.json",
                                     "--quiet", "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  nlohmann::json j = nlohmann::json::parse(read_all(tmp.path / "o.json"));
  EXPECT_EQ(j["text"], "bad\xef\xbf\xbdname.txt");  // the invalid byte as U+FFFD
  r = run_kq_in(tmp.path, {"eval", "-m", demo_model().string(), "-t", bad_text, "--json", "-", "--quiet",
                           "--threads", "1"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(nlohmann::json::parse(r.out)["text"], "bad\xef\xbf\xbdname.txt");

  // A model folder and a calibration file named so (kq bench).
  const std::string bad_model = "m\xfe";
  fs::copy(demo_model(), tmp.path / bad_model, fs::copy_options::recursive);
  write_text(tmp.path / ("c\xff.txt"), read_all(demo_model() / "demo-calibration.txt"));
  r = run_kq_in(tmp.path, {"bench", "-m", bad_model, "--modes", "awq", "--no-latency", "--samples", "1",
                           "--calibration", "c\xff.txt", "--json", "b.json", "--threads", "1"});
  ASSERT_TRUE(r.status == 0 || r.status == 3) << r.err;
  j = nlohmann::json::parse(read_all(tmp.path / "b.json"));
  EXPECT_EQ(j["model"], "m\xef\xbf\xbd");
  EXPECT_EQ(j["calibration"], "c\xef\xbf\xbd.txt");
}

TEST(FreshUserRound12, NonUtf8KeepPatternIsAUsageError) {
  TempDir tmp;
  CliResult r = run_kq_in(tmp.path, {"quantize", "-m", demo_model().string(), "--mode", "int8", "--keep", "h\xff",
                                     "-o", "qx"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--keep")) << r.err;
  EXPECT_TRUE(has(r.err, "is not valid UTF-8")) << r.err;
  EXPECT_FALSE(fs::exists(tmp.path / "qx"));
  r = run_kq_in(tmp.path, {"bench", "--modes", "int8", "--keep", "c_\xc3", "--no-latency"});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--keep")) << r.err;
}

}  // namespace
}  // namespace kq::testing
