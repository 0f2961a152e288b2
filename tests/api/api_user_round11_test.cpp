// Findings of a fresh C++ user of the installed library (round 11), each re-run
// here: crashes on a moved-from KV cache, on size products that overflow, on
// undefined tensors and a null model; a saved folder its own loader refused;
// overflowing byte and token counts returned as garbage.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <utility>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/bench.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "kq/tensor.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;

TEST(ApiUserRound11, MovedFromKvCacheIsEmptyAndRefusedNotACrash) {
  auto m = Model::load(demo_model());
  KVCache kv = m->make_cache(16);
  KVCache kv2 = std::move(kv);
  EXPECT_EQ(kv.capacity(), 0);  // NOLINT(bugprone-use-after-move): the documented moved-from state
  EXPECT_EQ(kv.bytes(), 0u);
  EXPECT_EQ(kv2.capacity(), 16);
  const std::vector<int32_t> t{1, 2, 3};
  std::vector<float> logits(3 * size_t(m->config().vocab_size));
  EXPECT_THROW(m->forward(t, kv, logits.data()), InvalidArgument);  // was SIGSEGV in store_kv
  EXPECT_NO_THROW(m->forward(t, kv2, logits.data()));
  KVCache kv3;
  kv3 = std::move(kv2);
  EXPECT_EQ(kv3.size(), 3);
  EXPECT_EQ(kv2.capacity(), 0);  // NOLINT(bugprone-use-after-move)
}

TEST(ApiUserRound11, SizeProductsThatOverflowAreRefused) {
  EXPECT_THROW(KVCache(1, 1, 1, int64_t(1) << 62), InvalidArgument);  // was SIGSEGV (memset past a wrapped size)
  EXPECT_THROW(KVCache(1 << 20, 1 << 20, 1 << 20, 1 << 20), InvalidArgument);
  EXPECT_THROW(quantized_weight_bytes(parse_quant_mode("nf4"), int64_t(1) << 40, int64_t(1) << 40),
               InvalidArgument);  // returned 4
  EXPECT_THROW(shape_numel({int64_t(1) << 40, int64_t(1) << 40}), InvalidArgument);  // returned 0
  const size_t big = std::numeric_limits<size_t>::max();
  EXPECT_THROW(allocate_precision({{{big, 0}}, {{big, 0}}}, big), InvalidArgument);  // was SIGSEGV
  // prompt + decode wrapped negative and "fit".
  const int64_t huge = std::numeric_limits<int64_t>::max();
  EXPECT_THROW(fit_latency_options({.prompt_tokens = huge, .decode_tokens = 10}, 256), InvalidArgument);
  EXPECT_THROW(fit_latency_options({.prompt_tokens = 10, .decode_tokens = huge}, 256), InvalidArgument);
}

TEST(ApiUserRound11, UndefinedTensorAndNullModelAreInvalidArguments) {
  const Tensor t;
  EXPECT_THROW((void)t.clone(), InvalidArgument);   // was SIGSEGV
  EXPECT_THROW((void)t.to_f32(), InvalidArgument);  // was SIGSEGV
  const std::vector<int32_t> prompt{1};
  EXPECT_THROW(measure_latency({nullptr}, prompt, {}), InvalidArgument);  // was SIGSEGV
  // The index given is named ("dimension -1" was said for -3).
  const std::string msg = kq::testing::error_of<InvalidArgument>([] { (void)Tensor::zeros(DType::F32, {2, 3}).dim(-3); });
  EXPECT_TRUE(kq::testing::has(msg, "dimension -3 out of range for shape [2, 3]")) << msg;
}

// Garbage in is said, not passed on: a name parse_adaptive_mode refuses, a
// NaN timing read as stable, an FP8Format that is neither format, a negative
// calibration window taken for the default.
TEST(ApiUserRound11, OutOfRangeValuesAreRefusedOrFlagged) {
  AdaptiveOptions a;
  a.target_reduction = 1.5;
  EXPECT_THROW((void)adaptive_mode_name(a), InvalidArgument);  // was "adaptive-r150"
  a.target_reduction = 0.8;
  EXPECT_EQ(adaptive_mode_name(a), "adaptive-r80");
  const std::vector<double> nan_run{NAN, 1.0, 2.0}, negative{1.0, -1.0}, fine{1.0, 1.05, 1.02};
  EXPECT_TRUE(latency_is_unstable(nan_run));  // was false (the spread was NaN)
  EXPECT_TRUE(latency_is_unstable(negative));
  EXPECT_FALSE(latency_is_unstable(fine));
  Fp8Tensor t = quantize_to_fp8(Tensor::zeros(DType::F32, {2, 4}), FP8Config{});
  t.format = FP8Format(9);
  EXPECT_THROW((void)dequantize_from_fp8(t), InvalidArgument);  // was NaN
  auto m = Model::load(demo_model());
  QuantizeOptions awq;
  awq.spec = parse_quant_mode("awq");
  awq.calibration.tokens = std::vector<int32_t>(300, 5);
  awq.calibration.window = -1;
  const std::string msg = kq::testing::error_of<InvalidArgument>([&] { quantize_model(*m, awq); });
  EXPECT_TRUE(kq::testing::has(msg, "calibration window -1 must be >= 0")) << msg;
}

// A bad token id is named at its index in the caller's span (the forward of
// window 2 said "index 44" for index 300).
TEST(ApiUserRound11, BadTokenIdIsNamedAtItsIndexInTheSpan) {
  auto m = Model::load(demo_model());
  std::vector<int32_t> ids(400, 5);
  ids[300] = 99999;
  std::string msg = kq::testing::error_of<InvalidArgument>([&] { (void)evaluate_perplexity(*m, ids, 128); });
  EXPECT_TRUE(kq::testing::has(msg, "perplexity: token id 99999 at index 300 is outside the vocabulary")) << msg;
  auto c = Model::load(demo_model());
  msg = kq::testing::error_of<InvalidArgument>([&] { (void)compare_models(*m, *c, ids, 128); });
  EXPECT_TRUE(kq::testing::has(msg, "compare_models: token id 99999 at index 300")) << msg;
  ids[300] = 5;
  ids[399] = -1;  // past the windows max_windows = 2 scores: not looked at
  EXPECT_NO_THROW((void)evaluate_perplexity(*m, ids, 128, 2));
}

// Options that do not describe the model: the folder said "int8" for nf4
// layers, and Model::load refused what save_quantized_model had written.
TEST(ApiUserRound11, SaveRefusesOptionsThatDoNotMatchTheModel) {
  kq::testing::TempDir tmp;
  auto m = Model::load(demo_model());
  QuantizeOptions nf4;
  nf4.spec = parse_quant_mode("nf4");
  quantize_model(*m, nf4);
  QuantizeOptions int8;
  int8.spec = parse_quant_mode("int8");
  const std::string msg = kq::testing::error_of<InvalidArgument>([&] { save_quantized_model(*m, int8, tmp.path / "q"); });
  EXPECT_TRUE(kq::testing::has(msg, "is nf4 but the options say int8")) << msg;
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "q"));
  save_quantized_model(*m, nf4, tmp.path / "q");
  EXPECT_NO_THROW(Model::load(tmp.path / "q"));
}

}  // namespace
}  // namespace kq
