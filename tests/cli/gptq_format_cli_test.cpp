// kq quantize --format gptq: an AutoGPTQ v1 checkpoint that kq eval reads back (through its GPTQ importer) with
// the perplexity of the kq folder within the FP16 rounding of the scales; modes and options GPTQ cannot hold are
// refused before any work, naming --format gptq and the mode; --help says what the option writes.
#include <gtest/gtest.h>

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;
using testing::has;
using testing::run_kq;

const std::string& demo() {
  static const std::string d = testing::demo_model().string();
  return d;
}

double eval_ppl(const fs::path& model, const fs::path& json) {
  const auto r = run_kq({"eval", "-m", model.string(), "-t", (testing::demo_model() / "demo-eval.txt").string(),
                         "--quiet", "--json", json.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  EXPECT_TRUE(has(r.out, "int4-g128")) << r.out;
  return nlohmann::json::parse(testing::read_all(json)).at("ppl").get<double>();
}

TEST(CliGptqFormat, WritesAGptqCheckpointThatKqEvalReads) {
  testing::TempDir tmp;
  const fs::path g = tmp.path / "g", k = tmp.path / "k";
  const auto q = run_kq({"quantize", "-m", demo(), "--mode", "int4-g128", "--format", "gptq", "-o", g.string()});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_TRUE(has(q.out, "GPTQ v1 checkpoint") && has(q.out, "group_size 128")) << q.out;
  const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(g / "config.json"));
  EXPECT_EQ(cfg.at("quantization_config").at("quant_method"), "gptq");
  EXPECT_EQ(cfg.at("quantization_config").at("checkpoint_format"), "gptq");
  EXPECT_TRUE(fs::exists(g / "quantize_config.json"));
  const auto kq = run_kq({"quantize", "-m", demo(), "--mode", "int4-g128", "-o", k.string()});
  ASSERT_EQ(kq.status, 0) << kq.err;
  const double ppl_gptq = eval_ppl(g, tmp.path / "g.json"), ppl_kq = eval_ppl(k, tmp.path / "k.json");
  EXPECT_NEAR(ppl_gptq, ppl_kq, 0.005 * ppl_kq);
  EXPECT_NE(ppl_gptq, ppl_kq);  // FP16 scales: not the same model to the last bit

  // --overwrite replaces a folder kq wrote in either format; the format is case-insensitive.
  const auto o = run_kq({"quantize", "-m", demo(), "--mode", "int4-g64-asym", "--format", "GPTQ", "-o", g.string(),
                         "--overwrite"});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_EQ(nlohmann::json::parse(testing::read_all(g / "config.json"))["quantization_config"]["sym"], false);
  const auto back = run_kq({"quantize", "-m", demo(), "--mode", "nf4", "-o", g.string(), "--overwrite"});
  EXPECT_EQ(back.status, 0) << back.err;
}

TEST(CliGptqFormat, ModesAndOptionsGptqCannotHoldAreRefusedBeforeAnyWork) {
  testing::TempDir tmp;
  const std::string out = (tmp.path / "o").string();
  struct Case {
    std::vector<std::string> extra;
    std::vector<std::string> said;
  };
  const std::vector<Case> cases = {
      {{"--mode", "nf4"}, {"--format gptq", "mode nf4", "int4-gB", "--format kq"}},
      {{"--mode", "int8"}, {"--format gptq", "mode int8"}},
      {{"--mode", "fp8"}, {"--format gptq", "fp8"}},
      {{"--mode", "awq"}, {"--format gptq", "per-input-channel scales"}},
      {{"--mode", "adaptive"}, {"--format gptq", "--mode adaptive", "one integer 4-bit format"}},
      {{"--mode", "int4-g128", "--keep", "c_fc"}, {"--format gptq", "--keep", "c_fc", "modules_to_not_convert"}},
      {{"--mode", "int4-g128", "--quantize-lm-head"}, {"--format gptq", "--quantize-lm-head"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"quantize", "-m", demo(), "--format", "gptq", "-o", out};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 1) << c.extra[1] << ": " << r.err;
    for (const std::string& s : c.said) EXPECT_TRUE(has(r.err, s)) << c.extra[1] << ": " << r.err;
    EXPECT_FALSE(has(r.out, "quantized")) << r.out;  // no work done
    EXPECT_FALSE(fs::exists(out));
  }
  const auto bad = run_kq({"quantize", "-m", demo(), "--mode", "int4-g128", "--format", "exl2", "-o", out});
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_TRUE(has(bad.err, "--format")) << bad.err;
}

TEST(CliGptqFormat, HelpSaysWhatTheFormatWrites) {
  const auto h = run_kq({"quantize", "--help"});
  ASSERT_EQ(h.status, 0) << h.err;
  EXPECT_TRUE(has(h.out, "--format") && has(h.out, "gptq") && has(h.out, "AutoGPTQ") && has(h.out, "vLLM")) << h.out;
}

}  // namespace
}  // namespace kq
