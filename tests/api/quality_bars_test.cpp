// The quality and memory bars of the quantization issue, on the shared trained
// models (gpt2-small, llama-small) and WikiText-2 test, under the perplexity
// protocol of docs/EVALUATION.md. CI evaluates the first KQ_QUALITY_WINDOWS
// windows (default 16 of ctx 512, ~8k tokens); KQ_QUALITY_WINDOWS=0 runs the
// whole file (as `kq bench --model ... --text ...wikitext-2-test.txt` does).
#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "common/test_data.hpp"
#include "kernels/linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"

using namespace kq;

namespace {

int quality_windows() {
  const char* e = std::getenv("KQ_QUALITY_WINDOWS");
  return e ? std::atoi(e) : 16;
}

struct Bar {
  const char* mode;
  double max_delta_pct;  // the bar (stricter than the specification's for INT8)
};

class QualityBars : public ::testing::TestWithParam<const char*> {};

TEST_P(QualityBars, PerplexityDeltaMemoryAndBitsPerWeight) {
  const std::string model = std::string("models/") + GetParam();
  KQ_REQUIRE_SHARED(model);
  KQ_REQUIRE_SHARED("data/text/wikitext-2-test.txt");
  const auto dir = kq::testing::shared_dir() / model;
  std::ifstream f(kq::testing::shared_dir() / "data/text/wikitext-2-test.txt");
  const std::string text((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
  const auto ids = Tokenizer::load(dir).encode(text);

  auto ref = Model::load(dir);
  for (const Bar& bar : {Bar{"int8", 1.0}, Bar{"fp8", 1.0}, Bar{"nf4", 5.0}}) {
    SCOPED_TRACE(bar.mode);
    QuantizeOptions o;
    o.spec = parse_quant_mode(bar.mode);
    QuantizeReport rep;
    auto q = load_quantized(dir, o, {}, &rep);
    const ComparisonResult c = compare_models(*ref, *q, ids, 0, quality_windows());
    const double delta = (c.ppl_cand / c.ppl_ref - 1) * 100;
    RecordProperty(std::string(bar.mode) + "_ppl_delta_pct", std::to_string(delta));
    EXPECT_LT(delta, bar.max_delta_pct) << "ppl " << c.ppl_ref << " -> " << c.ppl_cand;
    EXPECT_GT(c.top1_agreement, 0.85);
    // Memory: INT8/FP8 linear layers >= 70 % smaller than FP32; NF4 with double
    // quantization <= 4.2 bits per weight over real (unpadded) elements, as held.
    if (o.spec.family() != QuantFamily::INT4) {
      EXPECT_LE(double(rep.quantized_bytes_after), 0.30 * double(rep.quantized_bytes_before));
    } else {
      EXPECT_LE(rep.bits_per_weight(), 4.2);
      EXPECT_GT(rep.bits_per_weight(), 4.0);
    }
  }
}

// INT8: per-channel scales beat one per-tensor scale on every matrix (uniform
// grid: the step shrinks with the row's absmax). FP8 is a floating format whose
// relative precision does not depend on the scale except near subnormals, so
// per-tensor can win a single matrix by rounding luck (seen: llama-small
// layers.0.mlp.down_proj, 1.4461e-6 vs 1.4442e-6); the bar holds over the
// model's weights as a whole.
TEST_P(QualityBars, PerChannelBeatsPerTensorOnRealWeights) {
  const std::string model = std::string("models/") + GetParam();
  KQ_REQUIRE_SHARED(model);
  auto m = Model::load(kq::testing::shared_dir() / model);
  auto sse = [](const Tensor& w, const std::string& mode) {
    auto q = quantize_linear(w, Tensor(), parse_quant_mode(mode));
    const Tensor d = q->dequantized_weight();
    double e = 0;
    for (int64_t i = 0; i < w.numel(); ++i) {
      const double diff = double(w.data<float>()[i]) - double(d.data<float>()[i]);
      e += diff * diff;
    }
    return e;
  };
  double fp8_pc = 0, fp8_pt = 0;
  for (const LinearSlot& s : m->linear_layers()) {
    if (s.is_lm_head) continue;
    const Tensor w = (*s.op)->dequantized_weight();
    EXPECT_LT(sse(w, "int8"), sse(w, "int8-pt")) << s.name;
    fp8_pc += sse(w, "fp8");
    fp8_pt += sse(w, "fp8-pt");
  }
  EXPECT_LT(fp8_pc, fp8_pt);
}

INSTANTIATE_TEST_SUITE_P(SharedModels, QualityBars, ::testing::Values("gpt2-small", "llama-small"),
                         [](const auto& i) { return std::string(i.param) == "gpt2-small" ? "gpt2_small" : "llama_small"; });

}  // namespace
