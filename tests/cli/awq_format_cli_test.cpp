// kq quantize --format awq: an AutoAWQ GEMM checkpoint (AWQ's s folded into the norms, up_proj and v_proj)
// that kq eval reads back through its AutoAWQ importer with the perplexity of the kq AWQ folder within the FP16
// rounding of scales and norms; a grouped-query model's o_proj is quantized with s = 1 and the table says so;
// modes, options and models AutoAWQ cannot hold are refused before any work, naming --format awq.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "common/tiny_folder.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;
using testing::has;
using testing::run_kq;

/// A tiny Llama folder (F16, vocabulary of the demo model's tokenizer, whose files it gets) with `kv_heads`.
fs::path llama_with_tokenizer(const fs::path& dir, int64_t kv_heads) {
  testing::TinyFolder f{false, DType::F16, true};
  f.vocab = 8192;  // gpt2-tiny's tokenizer
  f.kv_heads = kv_heads;
  testing::write_folder(dir, f);
  for (const char* file : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"})
    fs::copy_file(testing::demo_model() / file, dir / file);
  return dir;
}

std::string calibration() { return (testing::demo_model() / "demo-calibration.txt").string(); }

double eval_ppl(const fs::path& model, const fs::path& json) {
  const auto r = run_kq({"eval", "-m", model.string(), "-t", (testing::demo_model() / "demo-eval.txt").string(),
                         "--quiet", "--json", json.string()});
  EXPECT_EQ(r.status, 0) << r.err;
  return nlohmann::json::parse(testing::read_all(json)).at("ppl").get<double>();
}

// Multi-head attention: every s folds, so the AutoAWQ folder is the kq AWQ folder's model up to FP16 rounding;
// their perplexities on the demo text agree within 0.5 % (measured: printed).
TEST(CliAwqFormat, WritesAnAutoAwqCheckpointThatKqEvalReads) {
  testing::TempDir tmp;
  const fs::path src = llama_with_tokenizer(tmp.path / "src", 4), a = tmp.path / "a", k = tmp.path / "k";
  const auto q = run_kq({"quantize", "-m", src.string(), "--mode", "awq-g32", "--format", "awq", "--calibration",
                         calibration(), "-o", a.string()});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_TRUE(has(q.out, "AutoAWQ checkpoint") && has(q.out, "group_size 32")) << q.out;
  EXPECT_FALSE(has(q.out, "not searched")) << q.out;
  const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(a / "config.json"));
  EXPECT_EQ(cfg.at("quantization_config").at("quant_method"), "awq");
  EXPECT_EQ(cfg.at("quantization_config").at("version"), "gemm");
  EXPECT_EQ(testing::read_all(a / "tokenizer.json"), testing::read_all(src / "tokenizer.json"));
  const auto kq = run_kq({"quantize", "-m", src.string(), "--mode", "awq-g32", "--calibration", calibration(), "-o",
                          k.string()});
  ASSERT_EQ(kq.status, 0) << kq.err;
  const double ppl_awq = eval_ppl(a, tmp.path / "a.json"), ppl_kq = eval_ppl(k, tmp.path / "k.json");
  std::printf("tiny Llama awq-g32 perplexity: kq folder %.6f, AutoAWQ export %.6f (%+.4f %%)\n", ppl_kq, ppl_awq,
              100.0 * (ppl_awq - ppl_kq) / ppl_kq);
  EXPECT_NEAR(ppl_awq, ppl_kq, 0.005 * ppl_kq);
  EXPECT_NE(ppl_awq, ppl_kq);  // FP16 scales and norms: not the same model to the last bit

  // --overwrite replaces a folder kq wrote; the format is case-insensitive; symmetric AWQ is written too.
  const auto o = run_kq({"quantize", "-m", src.string(), "--mode", "awq-g64-sym", "--format", "AWQ", "--calibration",
                         calibration(), "-o", a.string(), "--overwrite"});
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_TRUE(has(o.out, "zero points 8")) << o.out;
  EXPECT_EQ(nlohmann::json::parse(testing::read_all(a / "config.json"))["quantization_config"]["group_size"], 64);
}

// Grouped-query attention: o_proj's s is fixed at 1 (the table says so), the rest searched; the folder loads.
TEST(CliAwqFormat, GroupedQueryOProjIsQuantizedWithUnitScales) {
  testing::TempDir tmp;
  const fs::path src = llama_with_tokenizer(tmp.path / "src", 2), a = tmp.path / "a";
  const auto q = run_kq({"quantize", "-m", src.string(), "--mode", "awq-g32", "--format", "awq", "--calibration",
                         calibration(), "-o", a.string()});
  ASSERT_EQ(q.status, 0) << q.err;
  EXPECT_TRUE(has(q.out, "model.layers.0.self_attn.o_proj") && has(q.out, "not searched: s = 1")) << q.out;
  const double ppl = eval_ppl(a, tmp.path / "a.json");
  EXPECT_TRUE(std::isfinite(ppl) && ppl > 1.0) << ppl;
}

TEST(CliAwqFormat, ModesOptionsAndModelsAutoAwqCannotHoldAreRefusedBeforeAnyWork) {
  testing::TempDir tmp;
  const fs::path src = llama_with_tokenizer(tmp.path / "src", 2);
  const std::string out = (tmp.path / "o").string();
  struct Case {
    std::string model;
    std::vector<std::string> extra;
    std::vector<std::string> said;
  };
  const std::string llama = src.string(), gpt2 = testing::demo_model().string();
  const std::vector<Case> cases = {
      {llama, {"--mode", "nf4"}, {"--format awq", "mode nf4", "--mode awq, awq-gB or awq-gB-sym", "--format kq"}},
      {llama, {"--mode", "int4-g128"}, {"--format awq", "int4-g128", "no AWQ scales", "--format gptq"}},
      {llama, {"--mode", "adaptive"}, {"--format awq", "--mode adaptive", "one AWQ 4-bit format"}},
      {llama, {"--mode", "awq-g32", "--keep", "down_proj"}, {"--format awq", "--keep ('down_proj')"}},
      {llama, {"--mode", "awq-g32", "--quantize-lm-head"}, {"--format awq", "--quantize-lm-head"}},
      {llama, {"--mode", "awq"}, {"--format awq", "hidden_size is 64, not a multiple of 128"}},
      {gpt2, {"--mode", "awq"}, {"--format awq", "GPT-2", "GELU"}},
  };
  for (const Case& c : cases) {
    std::vector<std::string> args = {"quantize", "-m", c.model, "--format", "awq", "-o", out};
    args.insert(args.end(), c.extra.begin(), c.extra.end());
    const auto r = run_kq(args);
    EXPECT_EQ(r.status, 1) << c.extra[1] << ": " << r.err;
    for (const std::string& s : c.said) EXPECT_TRUE(has(r.err, s)) << c.extra[1] << ": " << r.err;
    EXPECT_FALSE(has(r.out, "quantized")) << r.out;  // no work done
    EXPECT_FALSE(has(r.out, "AWQ calibration text")) << r.out;
    EXPECT_FALSE(fs::exists(out));
  }
  const auto h = run_kq({"quantize", "--help"});
  ASSERT_EQ(h.status, 0) << h.err;
  EXPECT_TRUE(has(h.out, "AutoAWQ") && has(h.out, "awq-gB-sym")) << h.out;
}

}  // namespace
}  // namespace kq
