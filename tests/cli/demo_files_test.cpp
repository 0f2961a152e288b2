// Where kq finds its shipped demo files (tools/kq/demo_files.hpp): from where
// the kq program is (installed or built), whatever the current folder; an
// error about a default file does not blame an option the user never gave.
#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

namespace fs = std::filesystem;
using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq_in;
using kq::testing::sh_quote;
using kq::testing::TempDir;

namespace {

/// A copy of the demo model's files in `to`, without its demo texts (as a
/// model downloaded from elsewhere has none).
void copy_model_without_texts(const fs::path& to) {
  fs::create_directories(to);
  for (const auto& e : fs::directory_iterator(demo_model()))
    if (e.path().extension() != ".txt") fs::copy_file(e.path(), to / e.path().filename());
}

}  // namespace

// Fresh-user finding: in a folder holding a models/gpt2-tiny of its own (a
// copy without the demo texts), `kq quantize -m OTHER --mode awq` failed
// "--calibration: 'models/gpt2-tiny/demo-calibration.txt' not found" though no
// --calibration was given, and `kq bench --modes int8` benchmarked that folder's
// model, then failed "--text: 'models/gpt2-tiny/demo-eval.txt' not found".
TEST(CliDemoFiles, ShippedFilesAreFoundWhateverTheCurrentFolder) {
  TempDir tmp;
  copy_model_without_texts(tmp.path / "models" / "gpt2-tiny");
  copy_model_without_texts(tmp.path / "other");
  const auto q = run_kq_in(tmp.path, {"quantize", "-m", "other", "--mode", "awq", "-o", "q"});
  EXPECT_EQ(q.status, 0) << q.err;
  EXPECT_TRUE(has(q.out, "AWQ calibration text " + (demo_model() / "demo-calibration.txt").string())) << q.out;
  const auto b = run_kq_in(tmp.path, {"bench", "--modes", "int8", "--samples", "1", "--no-latency", "--threads", "1"});
  EXPECT_EQ(b.status, 0) << b.err;
  EXPECT_TRUE(has(b.out, "  model   " + demo_model().string() + "\n")) << b.out;
}

// An installed kq (PREFIX/bin/kq) uses PREFIX/share/kernelquant/models/gpt2-tiny;
// a default file missing there is named as the default, not as an option.
TEST(CliDemoFiles, MissingDefaultFileIsNotBlamedOnAnOption) {
  TempDir tmp;
  const fs::path prefix = tmp.path / "prefix";
  fs::create_directories(prefix / "bin");
  fs::copy_file(KQ_CLI_BINARY, prefix / "bin" / "kq");
  copy_model_without_texts(prefix / "share" / "kernelquant" / "models" / "gpt2-tiny");
  copy_model_without_texts(tmp.path / "other");
  auto run = [&](const std::string& args) {
    const std::string cmd = "cd " + sh_quote(tmp.path.string()) + " && " + sh_quote((prefix / "bin" / "kq").string()) +
                            " " + args + " </dev/null >out 2>err";
    const int rc = std::system(cmd.c_str());
    return std::make_pair(WIFEXITED(rc) ? WEXITSTATUS(rc) : -1, kq::testing::read_all(tmp.path / "err"));
  };
  const std::string shared = (prefix / "share" / "kernelquant" / "models" / "gpt2-tiny").string();
  const auto [qs, qerr] = run("quantize -m other --mode awq -o q");
  EXPECT_EQ(qs, 1) << qerr;
  EXPECT_TRUE(has(qerr, "kq: error: the default calibration text (no --calibration given): '" + shared +
                            "/demo-calibration.txt' not found"))
      << qerr;
  const auto [bs, berr] = run("bench --modes int8 --samples 1 --no-latency");
  EXPECT_EQ(bs, 1) << berr;
  EXPECT_TRUE(has(berr, "kq: error: the default text (no --text given): '" + shared + "/demo-eval.txt' not found"))
      << berr;
}

// Tester 27 (F8): `kq bench -m OTHER` without --text scores the shipped demo text, a few thousand tokens, on
// which a mode's PASS / FAIL can differ from the full protocol's (llama-small int4: +6.49 % FAIL there, +4.27 %
// PASS on WikiText-2 test); a warning says so once. The demo model on its own text, or any --text: no warning.
TEST(CliDemoFiles, DemoTextForAnotherModelIsWarnedAbout) {
  TempDir tmp;
  copy_model_without_texts(tmp.path / "other");
  const std::vector<std::string> common = {"--modes", "int8", "--samples", "1", "--no-latency", "--threads", "1"};
  auto bench = [&](std::vector<std::string> args) {
    args.insert(args.begin(), "bench");
    args.insert(args.end(), common.begin(), common.end());
    return run_kq_in(tmp.path, args);
  };
  const auto other = bench({"-m", "other"});
  EXPECT_EQ(other.status, 0) << other.err;
  EXPECT_TRUE(has(other.err, "kq: warning: no --text: other is scored on the shipped demo text " +
                                 (demo_model() / "demo-eval.txt").string()))
      << other.err;
  EXPECT_TRUE(has(other.err, "give a full evaluation text")) << other.err;
  for (const auto& args : {std::vector<std::string>{}, std::vector<std::string>{"-m", demo_model().string()},
                           std::vector<std::string>{"-m", "other", "--text", (demo_model() / "demo-eval.txt").string()}}) {
    const auto r = bench(args);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(has(r.err, "no --text")) << r.err;
  }
}
