// Fresh-user findings driven through the kq program: a single-file model
// whose model.safetensors is a FIFO hung kq eval / kq quantize; conflicting
// adaptive settings were resolved silently; adaptive bits/weight counted the
// quantized layers only; kq generate ignored sampling options at
// temperature 0 without a word.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <cstdlib>
#include <filesystem>
#include <regex>
#include <string>
#include <vector>

#include "cli/cli_util.hpp"

using kq::testing::CliResult;
using kq::testing::demo_model;
using kq::testing::run_kq;
using kq::testing::TempDir;
namespace fs = std::filesystem;

using kq::testing::has;

// It blocked forever in open(2) (every other FIFO input was already refused).
TEST(FreshUserRound, SingleFileWeightsThatAreAFifoAreRefusedAtOnce) {
  TempDir tmp;
  const fs::path dir = tmp.path / "st_fifo";
  fs::create_directories(dir);
  for (const auto& e : fs::directory_iterator(demo_model()))
    if (e.path().filename() != "model.safetensors") fs::copy(e.path(), dir / e.path().filename());
  const fs::path fifo = dir / "model.safetensors";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  const std::string text = (demo_model() / "demo-eval.txt").string();
  for (const std::vector<std::string>& cmd :
       {std::vector<std::string>{"eval", "-m", dir.string(), "-t", text, "--samples", "1"},
        std::vector<std::string>{"quantize", "-m", dir.string(), "--mode", "int8", "-o",
                                 (tmp.path / "out").string()}}) {
    const CliResult r = run_kq(cmd, 30);
    EXPECT_EQ(r.status, 1) << cmd[0] << " (124/-1: it blocked): " << r.err;
    EXPECT_TRUE(has(r.err, fifo.string() + ": is a FIFO (named pipe), not a regular file")) << cmd[0] << ": "
                                                                                            << r.err;
  }
}

// "--mode adaptive-r70 --target-reduction 0.5" used 50 %, "--mode
// adaptive-r50-error --strategy uniform" used uniform.
TEST(FreshUserRound, AdaptiveModeAndOptionThatDisagreeAreAUsageError) {
  TempDir tmp;
  const std::string m = demo_model().string(), out = (tmp.path / "q").string();
  CliResult r = run_kq({"quantize", "-m", m, "--mode", "adaptive-r70", "--target-reduction", "0.5", "-o", out});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--mode adaptive-r70 asks for a target reduction of 70 % but --target-reduction 0.5"))
      << r.err;
  r = run_kq({"quantize", "-m", m, "--mode", "adaptive-r50-error", "--strategy", "uniform", "-o", out});
  EXPECT_EQ(r.status, 2) << r.err;
  EXPECT_TRUE(has(r.err, "--mode adaptive-r50-error asks for the error strategy but --strategy uniform"))
      << r.err;
  EXPECT_FALSE(fs::exists(out));
  // The same value twice, and an option for what the name leaves open, are fine.
  r = run_kq({"quantize", "-m", m, "--mode", "adaptive-r70-error", "--target-reduction", "0.7", "--strategy",
              "error", "-o", out});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "error strategy, target 70 %")) << r.out;
  r = run_kq({"quantize", "-m", m, "--mode", "adaptive-error", "--target-reduction", "0.6", "-o",
              (tmp.path / "q2").string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "error strategy, target 60 %")) << r.out;
}

// 7 of the 8 planned layers stay FP32 but it printed "8.250 bits/weight".
TEST(FreshUserRound, AdaptiveBitsPerWeightCountTheLayersKeptInFp32) {
  TempDir tmp;
  const CliResult r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "adaptive-r0.0001", "-o",
                              (tmp.path / "q").string()});
  ASSERT_EQ(r.status, 0) << r.err;
  std::smatch match;
  ASSERT_TRUE(std::regex_search(r.out, match, std::regex(R"(([0-9.]+) bits/weight)"))) << r.out;
  const double bits = std::stod(match[1].str());
  EXPECT_GT(bits, 20.0) << r.out;
  EXPECT_LT(bits, 32.0) << r.out;
}

// --top-k / --top-p / --seed at the default --temperature 0 were ignored silently.
TEST(FreshUserRound, SamplingOptionsAtTemperatureZeroAreWarnedAbout) {
  const std::string m = demo_model().string();
  CliResult r = run_kq({"generate", "--model", m, "--prompt", "Hello", "-n", "2", "--top-k", "5", "--top-p", "0.5",
                        "--seed", "7"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "--top-k, --top-p and --seed have no effect at --temperature 0 (greedy")) << r.err;
  r = run_kq({"generate", "--model", m, "--prompt", "Hello", "-n", "2", "--seed", "7"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "--seed has no effect at --temperature 0")) << r.err;
  for (const std::vector<std::string>& extra :
       {std::vector<std::string>{"--temperature", "0.8", "--top-k", "5", "--seed", "7"}, std::vector<std::string>{}}) {
    std::vector<std::string> args = {"generate", "--model", m, "--prompt", "Hello", "-n", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    r = run_kq(args);
    EXPECT_EQ(r.status, 0) << r.err;
    EXPECT_FALSE(has(r.err, "no effect")) << r.err;
  }
}
