// A copy of kq quantize's staging folder (OUT.tmp-XXXXXX, its .kq-staging marker still there: copied while it
// was being written, or left by a killed kq) may lack the files written last. The model load refused it, but
// `kq tokenize -m` read its tokenizer, and `kq quantize -m` called it an already quantized folder. Every command
// that reads a model folder now refuses it with the model load's message (io::check_not_staging_folder).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_util.hpp"

namespace kq::testing {
namespace {

namespace fs = std::filesystem;

TEST(CliStagingFolder, EveryCommandReadingTheFolderRefusesIt) {
  TempDir tmp;
  const fs::path q = tmp.path / "q", stage = tmp.path / "q.tmp-Ab12Cd";
  const CliResult made = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", q.string(),
                                 "--threads", "1"});
  ASSERT_EQ(made.status, 0) << made.err;
  fs::copy(q, stage, fs::copy_options::recursive);
  { std::ofstream(stage / ".kq-staging"); }
  const std::string text = (demo_model() / "demo-eval.txt").string();
  const std::string refused = stage.string() + ": the folder holds .kq-staging: it is an unfinished kq quantize "
                                               "output (a staging folder copied while it was being written, or left "
                                               "by an interrupted kq quantize) and may lack files; remove it and run "
                                               "kq quantize again";
  const std::vector<std::vector<std::string>> commands = {
      {"tokenize", "-m", stage.string(), "Hello world"},
      {"tokenize", "-m", stage.string(), "--decode", "1", "2"},
      {"generate", "-m", stage.string(), "--prompt", "Once", "-n", "1", "--threads", "1"},
      {"eval", "-m", stage.string(), "-t", text, "--threads", "1"},
      {"compare", stage.string(), demo_model().string(), "-t", text, "--threads", "1"},
      {"compare", demo_model().string(), stage.string(), "-t", text, "--threads", "1"},
      {"bench", "-m", stage.string(), "--modes", "int8", "--samples", "1", "--no-latency", "--threads", "1"},
      {"quantize", "-m", stage.string(), "--mode", "int8", "-o", (tmp.path / "again").string()},
  };
  for (const auto& args : commands) {
    SCOPED_TRACE(args[0] + " " + args[1]);
    const CliResult r = run_kq(args);
    EXPECT_EQ(r.status, 1) << r.out << r.err;
    EXPECT_TRUE(has(r.err, "kq: error: " + refused)) << r.err;
    EXPECT_EQ(count(r.err, ".kq-staging"), 1u) << r.err;  // said once, not after other messages about the folder
  }
  EXPECT_FALSE(fs::exists(tmp.path / "again"));

  // The same files without the marker are a folder these commands read (so the refusals above are the marker's).
  fs::remove(stage / ".kq-staging");
  const CliResult t = run_kq({"tokenize", "-m", stage.string(), "Hello world"});
  EXPECT_EQ(t.status, 0) << t.err;
  const CliResult g = run_kq({"generate", "-m", stage.string(), "--prompt", "Once", "-n", "1", "--threads", "1"});
  EXPECT_EQ(g.status, 0) << g.err;
}

}  // namespace
}  // namespace kq::testing
