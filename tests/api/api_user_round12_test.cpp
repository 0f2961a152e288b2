// Findings of a fresh C++ user of the installed library (round 12), each re-run
// here: byte sizes that wrapped to 0 and a moved-from tokenizer (crashes);
// enum values outside their enum named as valid ones or accepted silently;
// counts and indices without a check.
#include <gtest/gtest.h>

#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>

#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/quantize.hpp"
#include "kq/tensor.hpp"
#include "kq/tokenizer.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;

// numel fits int64 but numel x element size wrapped to 0: nbytes() was 0, and
// transposed() / zeros() wrote past a 64-byte allocation (SIGSEGV); view()
// accepted 2^62 floats on a 16-byte storage.
TEST(ApiUserRound12, ByteSizesThatOverflowAreRefused) {
  const int64_t g31 = int64_t(1) << 31;
  std::string msg = error_of<InvalidArgument>([&] { (void)Tensor::empty(DType::F32, {g31, g31}); });
  EXPECT_TRUE(has(msg, "shape [2147483648, 2147483648] of F32")) << msg;
  EXPECT_TRUE(has(msg, "overflows int64")) << msg;
  EXPECT_THROW((void)Tensor::zeros(DType::F64, {int64_t(1) << 61}), InvalidArgument);
  EXPECT_THROW((void)Tensor::view(std::make_shared<HeapStorage>(16), 0, DType::F32, {int64_t(1) << 62}),
               InvalidArgument);
  EXPECT_THROW((void)Tensor::zeros(DType::F32, {4}).reshaped({int64_t(1) << 62, 0}), InvalidArgument);
  EXPECT_EQ(Tensor::zeros(DType::F64, {3, 0}).nbytes(), 0u);  // an empty tensor is still fine
}

// shape_numel({-3, 4}) returned -12.
TEST(ApiUserRound12, ShapeNumelRefusesNegativeDimensions) {
  const std::string msg = error_of<InvalidArgument>([] { (void)shape_numel({-3, 4}); });
  EXPECT_TRUE(has(msg, "negative dimension in shape [-3, 4]")) << msg;
  EXPECT_EQ(shape_numel({}), 1);
  EXPECT_EQ(shape_numel({0, 5}), 0);
}

// Every call on a moved-from tokenizer dereferenced a null table (SIGSEGV).
TEST(ApiUserRound12, MovedFromTokenizerIsRefusedNotACrash) {
  Tokenizer t = Tokenizer::load(demo_model());
  Tokenizer u = std::move(t);
  // NOLINTBEGIN(bugprone-use-after-move): the documented moved-from state
  const std::string msg = error_of<InvalidArgument>([&] { (void)t.encode("hello"); });
  EXPECT_TRUE(has(msg, "Tokenizer: moved-from tokenizer (it has no tables)")) << msg;
  EXPECT_THROW((void)t.source(), InvalidArgument);
  EXPECT_THROW((void)t.vocab_size(), InvalidArgument);
  EXPECT_THROW((void)t.decode_token(0), InvalidArgument);
  EXPECT_THROW((void)t.token_to_id("a"), InvalidArgument);
  EXPECT_THROW((void)t.is_special(0), InvalidArgument);
  EXPECT_THROW((void)t.for_model(100000, "dir"), InvalidArgument);
  EXPECT_EQ(u.decode(u.encode("hello")), "hello");
  t = u;  // assigning a loaded tokenizer makes it usable again
  EXPECT_EQ(t.encode("hello"), u.encode("hello"));
  // NOLINTEND(bugprone-use-after-move)
}

// An out-of-range enum value was named as a valid one ("cpu", "e5m2") or as
// "?" in a message about another field.
TEST(ApiUserRound12, OutOfRangeEnumValuesAreNamedUnknown) {
  EXPECT_EQ(device_name(Device(7)), "unknown(7)");
  EXPECT_EQ(fp8_format_name(FP8Format(5)), "unknown(5)");
  EXPECT_EQ(precision_format_name(PrecisionFormat(99)), "unknown(99)");
  EXPECT_EQ(scale_granularity_name(ScaleGranularity(9)), "unknown(9)");
  EXPECT_EQ(quant_family_name(QuantFamily(9)), "unknown(9)");
  EXPECT_EQ(dtype_name(DType(200)), "unknown(200)");
  EXPECT_EQ(arch_name(Arch(9)), "unknown(9)");
  EXPECT_EQ(allocation_strategy_name(AllocationStrategy(9)), "unknown(9)");
  EXPECT_EQ(device_name(Device::CUDA), "cuda");
  EXPECT_EQ(fp8_format_name(FP8Format::E5M2), "e5m2");

  QuantSpec s = parse_quant_mode("nf4");
  s.format = PrecisionFormat(99);
  std::string msg = error_of<InvalidArgument>([&] { validate_quant_spec(s); });
  EXPECT_TRUE(has(msg, "QuantSpec.format 99 is not a PrecisionFormat")) << msg;
  msg = error_of<InvalidArgument>([] { (void)Model::load(demo_model(), {.device = Device(7)}); });
  EXPECT_TRUE(has(msg, "ExecContext::device 7 is not a Device")) << msg;
}

// Invalid enum values went through: FP8 codes that dequantize refused, a
// maximum of 57344, a plan, the INT4 family and its 5 % threshold for FP32.
TEST(ApiUserRound12, OutOfRangeEnumValuesAreRefused) {
  FP8Config cfg;
  cfg.format = FP8Format(7);
  EXPECT_THROW((void)quantize_to_fp8(Tensor::zeros(DType::F32, {2, 4}), cfg), InvalidArgument);
  EXPECT_THROW((void)fp8_max(FP8Format(5)), InvalidArgument);
  AdaptiveOptions a;
  a.strategy = AllocationStrategy(9);
  auto m = Model::load(demo_model());
  std::string msg = error_of<InvalidArgument>([&] { (void)plan_adaptive_precision(*m, a); });
  EXPECT_TRUE(has(msg, "AdaptiveOptions.strategy 9 is not an AllocationStrategy")) << msg;
  EXPECT_THROW((void)adaptive_mode_name(a), InvalidArgument);  // was "adaptive-r80-?"
  QuantSpec fp32;
  fp32.format = PrecisionFormat::FP32;
  msg = error_of<InvalidArgument>([&] { (void)fp32.family(); });
  EXPECT_TRUE(has(msg, "format fp32 is not a quantized weight format")) << msg;
  EXPECT_THROW((void)max_ppl_increase_pct(fp32), InvalidArgument);
  fp32.format = PrecisionFormat(42);
  EXPECT_THROW((void)fp32.family(), InvalidArgument);
  EXPECT_EQ(max_ppl_increase_pct(parse_quant_mode("nf4")), 5.0);
}

// perplexity_windows(-10, 256) returned no windows without a word and
// perplexity_windows(INT64_MAX - 5, 2) threw std::bad_alloc.
TEST(ApiUserRound12, PerplexityWindowCountsAreChecked) {
  std::string msg = error_of<InvalidArgument>([] { (void)perplexity_windows(-10, 256); });
  EXPECT_TRUE(has(msg, "token count must be >= 0, got -10")) << msg;
  const int64_t huge = std::numeric_limits<int64_t>::max() - 5;
  msg = error_of<InvalidArgument>([&] { (void)perplexity_windows(huge, 2); });
  EXPECT_TRUE(has(msg, "pass max_windows")) << msg;
  const auto capped = perplexity_windows(huge, 2, 3);  // bounded by max_windows: fine
  ASSERT_EQ(capped.size(), 3u);
  EXPECT_EQ(capped[2].begin, 4);
  EXPECT_EQ(capped[2].end, 6);
  const auto w = perplexity_windows(7, 4);
  ASSERT_EQ(w.size(), 2u);
  EXPECT_EQ(w[1].begin, 4);
  EXPECT_EQ(w[1].end, 7);
  EXPECT_EQ(perplexity_windows(9, 4).size(), 2u);  // the last window of 1 token is dropped
  EXPECT_TRUE(perplexity_windows(0, 2).empty());
}

// A hand-edited plan whose chosen index is out of range threw std::out_of_range.
TEST(ApiUserRound12, LowestPrecisionSpecNamesABadChosenIndex) {
  AdaptivePlan plan;
  LayerAnalysis l;
  l.name = "h.0.mlp.c_fc";
  l.candidates.resize(2);
  l.chosen = 5;
  plan.layers.push_back(l);
  const std::string msg = error_of<InvalidArgument>([&] { (void)lowest_precision_spec(plan); });
  EXPECT_TRUE(has(msg, "layer 'h.0.mlp.c_fc' has chosen = 5")) << msg;
}

// Model::load("") documented FormatError for a missing folder but threw
// InvalidArgument; the doc now says so (the behaviour is kept).
TEST(ApiUserRound12, EmptyModelPathIsAnInvalidArgumentAsDocumented) {
  EXPECT_THROW((void)Model::load(""), InvalidArgument);
}

}  // namespace
}  // namespace kq
