// run_bench's linear memory line against the checkpoint's original dtype (tester27 F2): docs/EVALUATION.md
// compares the quantized weights with "the unquantized model in its original dtype"; a fixed mode counted a BF16
// checkpoint's layers in FP32 (-74.7 % for int8 on llama-small) while an adaptive plan of the same int8 layers
// counted them in BF16 (-49.3 %). Checked against the FP32 bytes QuantizeReport counts for the same layers.
#include <gtest/gtest.h>

#include <string>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/bench.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"

using namespace kq;

namespace {

BenchOptions memory_only(const std::filesystem::path& model, const std::string& mode) {
  BenchOptions o;
  o.model_dir = model;
  o.text = kq::testing::demo_model() / "demo-eval.txt";
  o.modes = {mode};
  o.samples = 1;
  o.measure_latency = false;
  o.context.threads = 1;
  return o;
}

/// QuantizeReport of quantizing `model` in `mode` (bytes before in FP32, as the loaded model held the layers).
QuantizeReport fp32_report(const std::filesystem::path& model, const std::string& mode) {
  QuantizeOptions q;
  q.spec = parse_quant_mode(mode);
  QuantizeReport rep;
  (void)load_quantized(model, q, ExecContext{Device::CPU, 1}, &rep);
  return rep;
}

}  // namespace

// gpt2-tiny is F32 on disk (with biases): the original dtype is FP32, so the bytes are QuantizeReport's.
TEST(BenchMemoryBasis, AnF32CheckpointsLayersCountInF32) {
  const auto model = kq::testing::demo_model();
  const BenchReport r = run_bench(memory_only(model, "int8"));
  ASSERT_EQ(r.results.size(), 1u);
  const BenchResult& m = r.results[0];
  EXPECT_EQ(m.linear_before_dtype, "f32");
  const QuantizeReport q = fp32_report(model, "int8");
  EXPECT_EQ(m.linear_bytes_before, q.quantized_bytes_before);
  EXPECT_EQ(m.linear_bytes_after, q.quantized_bytes_after);
}

// llama-small is BF16 on disk, without biases: every mode counts its layers in BF16, half QuantizeReport's FP32
// bytes, and the int8 line agrees with the adaptive plan's of the same layers.
TEST(BenchMemoryBasis, ABf16CheckpointsLayersCountInBf16ForEveryMode) {
  KQ_REQUIRE_SHARED("models/llama-small");
  const auto model = kq::testing::shared_dir() / "models/llama-small";
  for (const std::string mode : {"int8", "nf4"}) {
    SCOPED_TRACE(mode);
    const BenchReport r = run_bench(memory_only(model, mode));
    ASSERT_EQ(r.results.size(), 1u);
    const BenchResult& m = r.results[0];
    EXPECT_EQ(m.linear_before_dtype, "bf16");
    const QuantizeReport q = fp32_report(model, mode);
    EXPECT_EQ(m.linear_bytes_before * 2, q.quantized_bytes_before);
    EXPECT_EQ(m.linear_bytes_after, q.quantized_bytes_after);
    // 1 − after / before against BF16: INT8 about 1 − 8.1 / 16, NF4 about 1 − 4.13 / 16.
    const double reduction = 1.0 - double(m.linear_bytes_after) / double(m.linear_bytes_before);
    EXPECT_NEAR(reduction, 1.0 - m.bits_per_weight / 16.0, 1e-9);
  }
  // An adaptive plan over the same layers counts the same bytes before.
  const BenchReport a = run_bench(memory_only(model, "adaptive-r49"));
  const BenchReport i = run_bench(memory_only(model, "int8"));
  EXPECT_EQ(a.results.at(0).linear_bytes_before, i.results.at(0).linear_bytes_before);
}
