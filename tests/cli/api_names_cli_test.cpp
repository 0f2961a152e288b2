// The library's messages name its C++ fields and parameters (BenchOptions::samples,
// "output folder '...'"; tests/api/api_messages_test.cpp); `kq` reports them
// with its options in their place (tools/kq/option_names.hpp), so a `kq` user
// still reads "--samples", "--out", "--ctx".
#include "../../tools/kq/option_names.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include "cli/cli_util.hpp"

using kq::cli::with_option_names;
using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq;

namespace {

namespace fs = std::filesystem;

TEST(CliOptionNames, ApiNamesReadAsTheOptionsThatSetThem) {
  EXPECT_EQ(with_option_names("ExecContext::threads must be in [0, 1024]"), "--threads must be in [0, 1024]");
  EXPECT_EQ(with_option_names("context length (ctx) 1: a window needs at least 2 tokens"),
            "context length (--ctx) 1: a window needs at least 2 tokens");
  EXPECT_EQ(with_option_names("SamplingParams::top_p must be in (0, 1]"), "--top-p must be in (0, 1]");
  EXPECT_EQ(with_option_names("BenchOptions::context.threads must be in [0, 1024]"), "--threads must be in [0, 1024]");
  EXPECT_EQ(with_option_names("context length (BenchOptions::ctx) 300 exceeds"), "context length (--ctx) 300 exceeds");
  EXPECT_EQ(with_option_names("(give more BenchOptions::samples, a larger BenchOptions::ctx or a longer "
                              "BenchOptions::text)"),
            "(give more --samples, a larger --ctx or a longer --text)");
  EXPECT_EQ(with_option_names("LatencyOptions::prompt_tokens 300 + LatencyOptions::decode_tokens 32"),
            "--prompt-tokens 300 + --decode-tokens 32");
  EXPECT_EQ(with_option_names("AWQ needs calibration text (QuantizeOptions::calibration.tokens)"),
            "AWQ needs calibration text (--calibration FILE)");
  EXPECT_EQ(with_option_names("output folder 'q': folder exists and is not empty (overwrite = true replaces it)"),
            "--out 'q': folder exists and is not empty (use --overwrite to replace it)");
  EXPECT_EQ(with_option_names("the output folder path is empty: give the folder to write"),
            "--out is empty: give the folder to write");
  // Text without an API name is left alone.
  EXPECT_EQ(with_option_names("--out 'q' is the --model folder 'm'"), "--out 'q' is the --model folder 'm'");
}

// The library's "context length (ctx) N" reached through `kq eval --ctx N`
// names --ctx. (--ctx 1, out of range for every model, is a usage error of
// the CLI now: tests/cli/usage_test.cpp.)
TEST(CliOptionNames, EvalCtxErrorNamesTheOption) {
  const auto r = run_kq({"eval", "--model", demo_model().string(), "--text",
                         (demo_model() / "demo-eval.txt").string(), "--ctx", "100000", "--threads", "1", "--quiet"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: context length (--ctx) 100000 exceeds the model's maximum")) << r.err;
  EXPECT_FALSE(has(r.err, "(ctx)")) << r.err;
}

// run_bench warns of a BenchOptions::samples beyond the text itself (the CLI did, the library did not): `kq bench`
// says it once, as --samples.
TEST(CliOptionNames, BenchSamplesBeyondTheTextIsWarnedOnceAsSamples) {
  const auto r = run_kq({"bench", "--model", demo_model().string(), "--text", (demo_model() / "demo-eval.txt").string(),
                         "--modes", "int8", "nf4", "--samples", "99", "--no-latency", "--threads", "1"});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(kq::testing::count(r.err, "kq: warning: --samples 99: the text (1655 tokens) has only 7 windows, 6 of 256 "
                                      "tokens and 1 of 119 (at most 256 per window); all 7 were evaluated (as with "
                                      "--samples 7)\n"),
            1u)
      << r.err;
}

// check_quantized_output's "output folder '...'" and `overwrite` read as --out and --overwrite.
TEST(CliOptionNames, QuantizeOutputFolderErrorsNameOutAndOverwrite) {
  kq::testing::TempDir tmp;
  const fs::path out = tmp.path / "mine";
  fs::create_directories(out);
  kq::testing::write_text(out / "notes.txt", "mine");
  auto r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string()});
  EXPECT_EQ(r.status, 1) << r.err;
  // --overwrite would refuse it (no config.json): not suggested (tester round 20).
  EXPECT_TRUE(has(r.err, "kq: error: --out '" + out.string() +
                             "': folder exists and is not empty, and --overwrite would not replace it: it is not a "
                             "model folder (no config.json); give another --out"))
      << r.err;
  kq::testing::write_text(out / "config.json", "{}");
  r = run_kq({"quantize", "-m", demo_model().string(), "--mode", "int8", "-o", out.string(), "--overwrite"});
  EXPECT_EQ(r.status, 1) << r.err;
  EXPECT_TRUE(has(r.err, "kq: error: --out '" + out.string() + "' is not a folder written by kq quantize")) << r.err;
  EXPECT_TRUE(has(r.err, "refusing to replace it with --overwrite")) << r.err;
  EXPECT_FALSE(has(r.err, "output folder '")) << r.err;
}

// A library warning (few_scored_tokens_warning) reads with the options too.
TEST(CliOptionNames, BenchFewScoredTokensWarningNamesTheOptions) {
  const auto r = run_kq({"bench", "--modes", "int8", "--samples", "1", "--ctx", "16", "--threads", "1",
                         "--no-latency"});
  EXPECT_TRUE(r.status == 0 || r.status == 3) << r.err;  // 3: int8 failed its threshold on 15 tokens
  EXPECT_TRUE(has(r.err, "(give more --samples, a larger --ctx or a longer --text)")) << r.err;
  EXPECT_FALSE(has(r.err, "BenchOptions::")) << r.err;
}

}  // namespace
