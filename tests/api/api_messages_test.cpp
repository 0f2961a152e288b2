// Errors and warnings of the library reached through the C++ API name the
// API's own fields and parameters (ExecContext::threads, BenchOptions::samples,
// "output folder '...'"), never a flag of the `kq` program, which a C++ caller
// does not have (they said "--threads", "--samples", "--out", ...). The `kq`
// CLI puts its options back in (tools/kq/option_names.hpp; tests/cli/
// api_names_cli_test.cpp checks that).
#include <gtest/gtest.h>
#include <unistd.h>

#include <cctype>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/bench.hpp"
#include "kq/context.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;
using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;

/// Whether `m` names a command-line flag: "--" followed by a letter.
bool names_a_flag(const std::string& m) {
  for (size_t at = m.find("--"); at != std::string::npos; at = m.find("--", at + 1))
    if (at + 2 < m.size() && std::isalpha(static_cast<unsigned char>(m[at + 2]))) return true;
  return false;
}

/// `m` names `field` and no flag.
::testing::AssertionResult names_field(const std::string& m, const std::string& field) {
  if (!has(m, field)) return ::testing::AssertionFailure() << "'" << field << "' not in: " << m;
  if (names_a_flag(m)) return ::testing::AssertionFailure() << "names a command-line flag: " << m;
  return ::testing::AssertionSuccess();
}

TEST(ApiMessages, ErrorsNameTheApiFieldNotACommandLineFlag) {
  ExecContext ctx;
  ctx.threads = kMaxThreads + 1;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { Model::load(demo_model(), ctx); }),
                          "ExecContext::threads must be in [0, "));

  auto model = Model::load(demo_model());
  const std::vector<int32_t> tokens(8, 1);
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { evaluate_perplexity(*model, tokens, 1); }),
                          "context length (ctx) 1"));
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { evaluate_perplexity(*model, tokens, 100000); }),
                          "context length (ctx) 100000 exceeds"));

  SamplingParams p;
  p.temperature = -1;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { Sampler s(p); }), "SamplingParams::temperature"));
  p = SamplingParams{};
  p.top_k = -1;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { Sampler s(p); }), "SamplingParams::top_k"));
  p = SamplingParams{};
  p.top_p = 0;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { Sampler s(p); }), "SamplingParams::top_p"));

  BenchOptions b;
  b.model_dir = demo_model();
  b.text = demo_model() / "demo-eval.txt";
  b.samples = -1;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "BenchOptions::samples must be >= 0"));
  b.samples = 1;
  b.modes = {};
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "BenchOptions::modes"));
  b.modes = {"int8"};
  b.model_dir = demo_model() / "no-such-folder";
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "BenchOptions::model_dir"));
  b.model_dir = demo_model();
  b.text = demo_model() / "no-such-text.txt";
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "BenchOptions::text"));
  b.text = demo_model() / "demo-eval.txt";
  b.modes = {"awq"};
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "BenchOptions::calibration"));
  b.modes = {"int8"};
  b.ctx = 1;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "context length (BenchOptions::ctx) 1"));
  b.ctx = 0;
  b.latency.prompt_tokens = 300;  // the demo model has 256 positions
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(b); }), "LatencyOptions::prompt_tokens 300"));

  LatencyOptions l;
  l.runs = 0;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { fit_latency_options(l, 256); }), "LatencyOptions::runs"));

  // The output folder of save_quantized_model / check_quantized_output, and its `overwrite`.
  kq::testing::TempDir tmp;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { check_quantized_output("", demo_model(), false); }),
                          "output folder path is empty"));
  const fs::path full = tmp.path / "full";
  fs::create_directories(full);
  kq::testing::write_text(full / "notes.txt", "mine");
  std::string e = error_of<InvalidArgument>([&] { check_quantized_output(full, demo_model(), false); });
  EXPECT_TRUE(names_field(e, "output folder '" + full.string() + "': folder exists and is not empty")) << e;
  // overwrite = true would refuse this folder (no config.json): the error does not suggest it (tester round 20).
  EXPECT_TRUE(has(e, "overwrite = true would not replace it: it is not a model folder (no config.json); choose "
                     "another output folder"))
      << e;
  e = error_of<InvalidArgument>([&] { check_quantized_output(full, demo_model(), true); });
  EXPECT_TRUE(names_field(e, "output folder '" + full.string() + "' exists and is not a model folder")) << e;
  kq::testing::write_text(full / "config.json", "{}");
  e = error_of<InvalidArgument>([&] { check_quantized_output(full, demo_model(), true); });
  EXPECT_TRUE(names_field(e, "refusing to replace it with overwrite = true")) << e;
}

// Tester: an existing, empty, writable `out` in a read-only folder gave "cannot create it in '<parent>' (Permission
// denied)", though `out` exists: the message says that the new folder is written beside `out` and renamed over it,
// so the folder it is in must be writable.
TEST(ApiMessages, AnOutputFolderInAReadOnlyFolderSaysTheParentMustBeWritable) {
  if (::geteuid() == 0) GTEST_SKIP() << "running as root: a read-only folder is writable";
  kq::testing::TempDir tmp;
  const fs::path ro = tmp.path / "ro3", out = ro / "q";
  fs::create_directories(out);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string e = error_of<InvalidArgument>([&] { check_quantized_output(out, demo_model(), false); });
  const std::string e2 = error_of<InvalidArgument>([&] { check_quantized_output(out, demo_model(), true); });
  fs::permissions(ro, fs::perms::owner_all);
  EXPECT_TRUE(has(e, "output folder '" + out.string() + "': cannot write it: kq writes the new folder as a sibling "
                     "in '" + ro.string() + "' and then renames it over '" + out.string() + "'"))
      << e;
  EXPECT_TRUE(has(e, "so '" + ro.string() + "' must be writable, not only '" + out.string() + "' (Permission denied)"))
      << e;
  EXPECT_EQ(e2, e);
  // A missing `out` is still "cannot create it in".
  fs::remove(out);
  fs::permissions(ro, fs::perms::owner_read | fs::perms::owner_exec);
  const std::string e3 = error_of<InvalidArgument>([&] { check_quantized_output(out, demo_model(), false); });
  fs::permissions(ro, fs::perms::owner_all);
  EXPECT_TRUE(has(e3, "output folder '" + out.string() + "': cannot create it in '" + ro.string() + "'")) << e3;
}

TEST(ApiMessages, WarningsNameTheApiFieldNotACommandLineFlag) {
  std::vector<std::string> warnings;
  const WarningHandler previous = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  auto model = Model::load(demo_model());
  QuantizeOptions o;
  o.keep_patterns = {"no_such_layer"};
  quantize_model(*model, o);
  LatencyOptions l;
  l.fit_prompt_tokens = true;
  (void)fit_latency_options(l, 100);
  BenchReport r;
  r.results.emplace_back();
  r.scored_tokens = 1;
  warnings.push_back(few_scored_tokens_warning(r));
  set_warning_handler(previous);
  ASSERT_EQ(warnings.size(), 3u);
  EXPECT_TRUE(names_field(warnings[0], "QuantizeOptions::keep_patterns 'no_such_layer' matches no linear layer"));
  EXPECT_TRUE(names_field(warnings[1], "LatencyOptions::prompt_tokens: using 68"));
  EXPECT_TRUE(names_field(warnings[2], "more BenchOptions::samples, a larger BenchOptions::ctx"));
}

// run_bench named its ctx and context by evaluate_perplexity's and ExecContext's names ("context length (ctx)",
// "ExecContext::threads"), and reduced a BenchOptions::samples above the windows of the text without a word
// (the CLI warned by itself).
TEST(ApiMessages, RunBenchNamesItsOwnFieldsAndWarnsOfSamplesBeyondTheText) {
  BenchOptions o;
  o.model_dir = demo_model();
  o.text = demo_model() / "demo-eval.txt";
  o.modes = {"int8"};
  o.measure_latency = false;
  o.context.threads = 1;
  BenchOptions bad = o;
  bad.ctx = 100000;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(bad); }),
                          "context length (BenchOptions::ctx) 100000 exceeds the model's maximum of 256 positions"));
  bad = o;
  bad.context.threads = -2;
  EXPECT_TRUE(names_field(error_of<InvalidArgument>([&] { run_bench(bad); }),
                          "BenchOptions::context.threads must be in [0, 1024] (0 = all cores), got -2"));
  std::vector<std::string> warnings;
  const WarningHandler previous = set_warning_handler([&](const std::string& m) { warnings.push_back(m); });
  o.samples = 100;
  o.ctx = 128;
  BenchReport r;
  try {
    r = run_bench(o);
  } catch (...) {
    set_warning_handler(previous);
    throw;
  }
  set_warning_handler(previous);
  EXPECT_EQ(r.windows, 13);
  size_t said = 0;
  for (const std::string& w : warnings)
    if (has(w, "BenchOptions::samples 100: the text (1655 tokens) has only 13 windows, 12 of 128 tokens and 1 of 119 "
               "(at most 128 per window); all 13 were evaluated (as with BenchOptions::samples 13)"))
      ++said;
  EXPECT_EQ(said, 1u) << ::testing::PrintToString(warnings);
}

// fit_latency_options names the model's context and counts a context of one
// position in the singular (it said "1 positions"; tester round 17b).
TEST(ApiMessages, LatencyContextMessagesCountInTheSingular) {
  const std::string one = error_of<InvalidArgument>([] { fit_latency_options({}, 1); });
  EXPECT_TRUE(has(one, "latency: the model's context of 1 position leaves no room")) << one;
  const std::string given = error_of<InvalidArgument>([&] { fit_latency_options({.prompt_tokens = 100}, 64); });
  EXPECT_TRUE(has(given, "LatencyOptions::prompt_tokens 100 + LatencyOptions::decode_tokens 32 = 132 tokens do not "
                         "fit the model's context of 64 positions; give at most 64 in all"))
      << given;
}

}  // namespace
}  // namespace kq
