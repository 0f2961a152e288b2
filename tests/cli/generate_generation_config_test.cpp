// `kq generate` takes its sampling defaults from generation_config.json as Hugging Face transformers'
// generate() does (do_sample, temperature, top_k, top_p, repetition_penalty, max_new_tokens), and every
// option given on the command line overrides the file's key (tester26 F-low). Checked by comparing the text
// generated from a copy of the demo model with such a file against the same settings given as options to the
// shipped demo model (whose generation_config.json sets none of these keys).
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <utility>
#include <vector>

#include "cli/cli_util.hpp"
#include "common/test_data.hpp"

namespace {

namespace fs = std::filesystem;
using kq::testing::CliResult;
using kq::testing::demo_model;
using kq::testing::has;
using kq::testing::run_kq;

/// A copy of the demo model in `dir` whose generation_config.json is `gen` (eos_token_id kept at 0).
fs::path with_generation_config(const fs::path& dir, const std::string& gen) {
  fs::copy(demo_model(), dir, fs::copy_options::recursive);
  std::ofstream(dir / "generation_config.json") << gen;
  return dir;
}

/// `kq generate` of "Once upon a time" with `extra` options (--ignore-eos: the text does not depend on
/// where the demo model happens to produce its EOS).
CliResult generate(const fs::path& model, std::vector<std::string> extra) {
  std::vector<std::string> args{"generate",  "-m",        model.string(), "--prompt",    "Once upon a time",
                                "--no-echo", "--threads", "1",            "--ignore-eos"};
  args.insert(args.end(), extra.begin(), extra.end());
  return run_kq(args);
}

TEST(CliGenerateGenerationConfig, NoSamplingKeysLeaveGreedyAndSeededTextAsBefore) {
  // The shipped demo model's generation_config.json has no sampling keys: greedy by default, nothing said.
  const CliResult plain = generate(demo_model(), {"-n", "12"});
  const CliResult greedy = generate(demo_model(), {"-n", "12", "--temperature", "0"});
  ASSERT_EQ(plain.status, 0) << plain.err;
  EXPECT_EQ(plain.out, greedy.out);
  EXPECT_FALSE(has(plain.err, "generation_config.json")) << plain.err;
  EXPECT_FALSE(has(plain.err, "sampling")) << plain.err;
  const CliResult seeded = generate(demo_model(), {"-n", "12", "--temperature", "0.9", "--seed", "4"});
  ASSERT_EQ(seeded.status, 0) << seeded.err;
  EXPECT_FALSE(has(seeded.err, "generation_config.json")) << seeded.err;
}

TEST(CliGenerateGenerationConfig, DoSampleFalseIsGreedyWhateverTemperatureSays) {
  kq::testing::TempDir tmp;
  const CliResult base = generate(demo_model(), {"-n", "12"});
  int i = 0;
  for (const char* gen : {R"({"eos_token_id": 0, "do_sample": false, "temperature": 0.7, "top_p": 0.9})",
                          R"({"eos_token_id": 0, "temperature": 0.7, "top_k": 5})"}) {
    const fs::path m = with_generation_config(tmp.path / std::to_string(i++), gen);
    const CliResult r = generate(m, {"-n", "12", "--seed", "1"});
    ASSERT_EQ(r.status, 0) << r.err;
    EXPECT_EQ(r.out, base.out) << gen;
    EXPECT_TRUE(has(r.err, "greedy decoding: generation_config.json")) << r.err;
  }
}

TEST(CliGenerateGenerationConfig, DoSampleTrueSamplesWithTheFileSettings) {
  kq::testing::TempDir tmp;
  const fs::path m = with_generation_config(
      tmp.path / "m", R"({"eos_token_id": 0, "do_sample": true, "temperature": 0.7, "top_k": 20, "top_p": 0.9})");
  const CliResult r = generate(m, {"-n", "16", "--seed", "3"});
  ASSERT_EQ(r.status, 0) << r.err;
  const CliResult same = generate(demo_model(), {"-n", "16", "--seed", "3", "--temperature", "0.7", "--top-k", "20",
                                                 "--top-p", "0.9"});
  ASSERT_EQ(same.status, 0) << same.err;
  EXPECT_EQ(r.out, same.out);
  EXPECT_NE(r.out, generate(demo_model(), {"-n", "16"}).out) << "sampling gave the greedy text";
  EXPECT_TRUE(has(r.err, "sampling from generation_config.json: temperature 0.7, top-k 20, top-p 0.9")) << r.err;
  // An option given overrides the file's key, the others stay the file's.
  const CliResult k5 = generate(m, {"-n", "16", "--seed", "3", "--top-k", "5"});
  ASSERT_EQ(k5.status, 0) << k5.err;
  EXPECT_EQ(k5.out, generate(demo_model(), {"-n", "16", "--seed", "3", "--temperature", "0.7", "--top-k", "5",
                                            "--top-p", "0.9"})
                        .out);
  EXPECT_TRUE(has(k5.err, "sampling: top-k 5 (--top-k), temperature 0.7 (generation_config.json)")) << k5.err;
  // --temperature 0 is greedy, whatever the file says.
  const CliResult t0 = generate(m, {"-n", "16", "--temperature", "0"});
  ASSERT_EQ(t0.status, 0) << t0.err;
  EXPECT_EQ(t0.out, generate(demo_model(), {"-n", "16"}).out);
}

TEST(CliGenerateGenerationConfig, DoSampleAloneUsesTransformersDefaults) {
  // transformers' GenerationConfig defaults: temperature 1.0, top_k 50, top_p 1.0.
  kq::testing::TempDir tmp;
  const fs::path m = with_generation_config(tmp.path / "m", R"({"eos_token_id": 0, "do_sample": true})");
  const CliResult r = generate(m, {"-n", "16", "--seed", "5"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_EQ(r.out, generate(demo_model(), {"-n", "16", "--seed", "5", "--temperature", "1", "--top-k", "50"}).out);
  EXPECT_TRUE(has(r.err, "sampling from generation_config.json: temperature 1 (transformers' default), top-k 50 "
                         "(transformers' default)"))
      << r.err;
}

TEST(CliGenerateGenerationConfig, MaxNewTokensIsTheDefaultOfN) {
  kq::testing::TempDir tmp;
  const fs::path m = with_generation_config(tmp.path / "m", R"({"eos_token_id": 0, "max_new_tokens": 3})");
  const CliResult r = generate(m, {});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "generated 3 tokens")) << r.err;
  EXPECT_TRUE(has(r.err, "-n 3 from generation_config.json's max_new_tokens")) << r.err;
  const CliResult n5 = generate(m, {"-n", "5"});
  ASSERT_EQ(n5.status, 0) << n5.err;
  EXPECT_TRUE(has(n5.err, "generated 5 tokens")) << n5.err;
  EXPECT_FALSE(has(n5.err, "max_new_tokens")) << n5.err;
}

TEST(CliGenerateGenerationConfig, RepetitionPenaltyFromTheFileOrTheOption) {
  kq::testing::TempDir tmp;
  const fs::path m = with_generation_config(tmp.path / "m", R"({"eos_token_id": 0, "repetition_penalty": 1.5})");
  const CliResult r = generate(m, {"-n", "40"});
  ASSERT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.err, "repetition penalty 1.5 from generation_config.json")) << r.err;
  const CliResult opt = generate(demo_model(), {"-n", "40", "--repetition-penalty", "1.5"});
  ASSERT_EQ(opt.status, 0) << opt.err;
  EXPECT_EQ(r.out, opt.out);
  const CliResult greedy = generate(demo_model(), {"-n", "40"});
  EXPECT_NE(r.out, greedy.out) << "a penalty of 1.5 changed nothing over 40 greedy tokens";
  // --repetition-penalty 1 turns the file's off.
  EXPECT_EQ(generate(m, {"-n", "40", "--repetition-penalty", "1"}).out, greedy.out);
  // The option must be > 0: a usage error naming it.
  const CliResult zero = generate(demo_model(), {"-n", "4", "--repetition-penalty", "0"});
  EXPECT_EQ(zero.status, 2);
  EXPECT_TRUE(has(zero.err, "--repetition-penalty")) << zero.err;
}

TEST(CliGenerateGenerationConfig, BadValuesAreErrorsNamingTheFileAndKey) {
  kq::testing::TempDir tmp;
  int i = 0;
  for (const auto& [gen, key] : std::vector<std::pair<std::string, std::string>>{
           {R"({"do_sample": "yes"})", "do_sample"},
           {R"({"temperature": -0.5})", "temperature"},
           {R"({"temperature": "hot"})", "temperature"},
           {R"({"top_p": 1.5})", "top_p"},
           {R"({"top_p": 0})", "top_p"},
           {R"({"top_k": -1})", "top_k"},
           {R"({"top_k": 2.5})", "top_k"},
           {R"({"repetition_penalty": 0})", "repetition_penalty"},
           {R"({"max_new_tokens": -3})", "max_new_tokens"}}) {
    const fs::path m = with_generation_config(tmp.path / std::to_string(i++), gen);
    const CliResult r = generate(m, {"-n", "2"});
    EXPECT_EQ(r.status, 1) << gen << "\n" << r.err;
    EXPECT_TRUE(has(r.err, (m / "generation_config.json").string() + ": " + key)) << gen << "\n" << r.err;
  }
}

}  // namespace
