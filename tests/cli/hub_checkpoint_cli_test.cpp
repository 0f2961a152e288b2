// kq eval / kq generate run a pre-quantized GPTQ checkpoint (llama-small's weights as a "gptq" v1, sym,
// group 128 folder written by tests/common/hub_pack.hpp), with the perplexity of the same model with the
// dequantized weights stored as F32; kq bench refuses it with a message that says why and what runs it.
#include <gtest/gtest.h>

#include <filesystem>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "cli/cli_util.hpp"
#include "common/hub_pack.hpp"
#include "common/test_data.hpp"
#include "models/llama_variant.hpp"

namespace kq {
namespace {

using testing::has;
using testing::run_kq;

/// Whether `name` is the weight of one of llama-small's quantizable linear layers.
bool is_linear_weight(const std::string& name) {
  return name.starts_with("model.layers.") && name.ends_with("_proj.weight");
}

TEST(CliHubCheckpoint, EvalAndGenerateRunAGptqFolder) {
  KQ_REQUIRE_SHARED("models/llama-small");
  testing::TempDir tmp;
  std::map<std::string, Tensor> reference;  // module weight name -> dequantized F32
  const auto hub = testing::llama_small_variant(
      tmp.path / "gptq",
      [](nlohmann::json& j) {
        j["quantization_config"] = {{"quant_method", "gptq"}, {"bits", 4},  {"group_size", 128},
                                    {"desc_act", false},      {"sym", true}, {"checkpoint_format", "gptq"}};
      },
      [&](std::map<std::string, Tensor>& t) {
        std::map<std::string, Tensor> out;
        for (auto& [name, w] : t) {
          if (!is_linear_weight(name)) {
            out[name] = w;
            continue;
          }
          const std::string module = name.substr(0, name.size() - std::string(".weight").size());
          const testing::HubCodes c = testing::hub_codes_rtn(w.to_f32(), 128);
          for (auto& [n, q] : testing::hub_layer_tensors(c, module, testing::HubFormat::GptqV1)) out[n] = q;
          reference[name] = testing::hub_reference(c);
        }
        t = std::move(out);
      });
  const auto ref = testing::llama_small_variant(tmp.path / "ref", [](nlohmann::json&) {},
                                                [&](std::map<std::string, Tensor>& t) {
                                                  for (auto& [name, w] : reference) t[name] = w;
                                                });
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"})
    for (const auto& dir : {hub, ref}) std::filesystem::copy_file(testing::llama_small_dir() / f, dir / f);

  const std::string text = (testing::shared_dir() / "data/text/wikitext-2-test.txt").string();
  const std::string jh = (tmp.path / "h.json").string(), jr = (tmp.path / "r.json").string();
  const auto e = run_kq({"eval", "-m", hub.string(), "-t", text, "--samples", "2", "--ctx", "128", "--quiet",
                         "--json", jh});
  ASSERT_EQ(e.status, 0) << e.err;
  EXPECT_TRUE(has(e.out, "weights:       int4-g128 (28 linear layers)")) << e.out;
  const auto r = run_kq({"eval", "-m", ref.string(), "-t", text, "--samples", "2", "--ctx", "128", "--quiet",
                         "--json", jr});
  ASSERT_EQ(r.status, 0) << r.err;
  const double ppl_hub = nlohmann::json::parse(testing::read_all(jh)).at("ppl").get<double>();
  const double ppl_ref = nlohmann::json::parse(testing::read_all(jr)).at("ppl").get<double>();
  EXPECT_NEAR(ppl_hub, ppl_ref, 1e-4 * ppl_ref);
  EXPECT_LT(ppl_hub, 1000.0);  // a working model (a misread layout gives thousands)

  const auto g = run_kq({"generate", "-m", hub.string(), "--prompt", "The", "-n", "4", "--seed", "1"});
  EXPECT_EQ(g.status, 0) << g.err;

  const auto b = run_kq({"bench", "-m", hub.string(), "-t", text, "--samples", "1", "--quiet"});
  EXPECT_NE(b.status, 0);
  // bitsandbytes named too (tester 22: its folders are refused here with the same message).
  EXPECT_TRUE(has(b.err, "already quantized") && has(b.err, "kq eval") &&
              has(b.err, "AutoAWQ / AutoGPTQ / bitsandbytes checkpoint"))
      << b.err;
}

}  // namespace
}  // namespace kq
