// Quantizing a tiny random Gemma 2 and Gemma 1 (tests/models/gemma2_tiny.hpp, written to a temporary folder):
// quantize -> save -> reload keeps model_type and the soft-caps, and the reloaded folder gives the in-memory
// quantized model's logits bit for bit (both capped once), without a warning. No shared data.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "models/gemma2_tiny.hpp"
#include "models/tiny_model_checks.hpp"

namespace kq {
namespace {

const ExecContext kCpu{Device::CPU, 2};
using testing::load_quietly;
using testing::tokens_of;

// Quantize -> save -> reload: the folder keeps model_type gemma2 and the soft-caps, and the reloaded model gives
// the in-memory quantized model's logits bit for bit (both capped once).
TEST(Gemma2Quantize, SavesAndReloadsToTheSameLogits) {
  for (const bool gemma1 : {false, true}) {
    SCOPED_TRACE(gemma1 ? "gemma" : "gemma2");
    testing::TinyGemma2 s;
    s.gemma1 = gemma1;
    s.ffn = 128;
    testing::TempDir tmp;
    const auto src = testing::write_model_folder(tmp.path / "src", testing::tiny_gemma2_config(s),
                                                 testing::tiny_gemma2_tensors(s));
    const auto tokens = tokens_of(16, s.vocab);
    for (const std::string mode : {"int8", "int4-g64"}) {
      SCOPED_TRACE(mode);
      QuantizeOptions o;
      o.spec = parse_quant_mode(mode);
      auto m = Model::load(src, kCpu);
      quantize_model(*m, o);
      const std::vector<float> want = kq::testing::prefill_logits(*m, tokens);
      if (!gemma1) {
        for (float z : want) ASSERT_LE(std::abs(z), float(s.final_softcap));
      }
      const auto out = tmp.path / mode;
      {
        testing::CapturedWarnings warnings;  // no tokenizer files: said, not checked here
        save_quantized_model(*m, o, out);
      }
      const nlohmann::json cfg = nlohmann::json::parse(testing::read_all(out / "config.json"));
      EXPECT_EQ(cfg.at("model_type"), gemma1 ? "gemma" : "gemma2");
      auto reloaded = load_quietly(out);
      EXPECT_EQ(reloaded->config().final_logit_softcapping, gemma1 ? 0.0 : s.final_softcap);
      EXPECT_EQ(kq::testing::prefill_logits(*reloaded, tokens), want);
    }
  }
}

}  // namespace
}  // namespace kq
