// Findings of a C++ user of the installed library (round 17), each re-run
// here: a folder saved with the lm_head quantized through
// QuantizeOptions::layer_specs (without quantize_lm_head) that Model::load
// refused; an FP32 op's dequantized_weight() that wrote through to the model;
// a user-wrapped op that save_quantized_model called "not quantized".
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/model_logits.hpp"
#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::TempDir;

/// Quantizes `dir` to int8 with the lm_head in `head_mode` through layer_specs (quantize_lm_head false), saves it,
/// reloads it and expects the reloaded model's logits to be bit-identical.
void expect_head_override_round_trips(const std::filesystem::path& dir, const std::string& head_mode) {
  SCOPED_TRACE(dir.string() + ", lm_head " + head_mode);
  auto m = Model::load(dir);
  const QuantizeOptions o{.spec = parse_quant_mode("int8"), .layer_specs = {{"lm_head", parse_quant_mode(head_mode)}}};
  (void)quantize_model(*m, o);
  TempDir tmp;
  save_quantized_model(*m, o, tmp.path / "q");
  std::unique_ptr<Model> r;
  ASSERT_NO_THROW(r = Model::load(tmp.path / "q"));  // FormatError: "quantize_lm_head is false but ... 'lm_head'"
  const std::vector<int32_t> ids{1, 17, 5, 42, 9, 3};
  EXPECT_EQ(kq::testing::prefill_logits(*r, ids), kq::testing::prefill_logits(*m, ids));
}

// quantize_model quantizes a layer_specs entry for the lm_head whatever quantize_lm_head says, but
// save_quantized_model recorded options.quantize_lm_head (false) beside a quantized 'lm_head', which the loader
// refuses: the record now says what the folder holds.
TEST(ApiUserRound17, LmHeadQuantizedByALayerSpecSavesAFolderThatLoads) {
  expect_head_override_round_trips(demo_model(), "nf4");
  expect_head_override_round_trips(demo_model(), "fp8");
  if (!kq::testing::have_shared("models/llama-small")) GTEST_SKIP() << "shared models/llama-small not found";
  expect_head_override_round_trips(kq::testing::shared_dir() / "models/llama-small", "nf4");
}

// An unquantized (FP32) op returned its live weight from the const dequantized_weight(): writing to the tensor
// changed the model's logits (quantized ops returned a copy). Every op returns a copy now.
TEST(ApiUserRound17, WritingToDequantizedWeightLeavesTheModelUnchanged) {
  auto m = Model::load(demo_model());
  const std::vector<int32_t> ids{1, 17, 5, 42, 9, 3};
  const std::vector<float> before = kq::testing::prefill_logits(*m, ids);
  for (const LinearSlot& s : m->linear_layers()) {  // the tied lm_head's weight is the token embedding
    ASSERT_EQ((*s.op)->format(), "f32") << s.name;
    Tensor w = (*s.op)->dequantized_weight();
    float* p = w.mutable_data<float>();
    for (int64_t i = 0; i < w.numel(); ++i) p[i] = 1e3f;
  }
  EXPECT_EQ(kq::testing::prefill_logits(*m, ids), before);
}

TEST(ApiUserRound17, WritingToBiasLeavesTheModelUnchanged) {
  for (const char* mode : {"", "int8", "nf4"}) {
    SCOPED_TRACE(*mode ? mode : "f32");
    auto m = Model::load(demo_model());
    if (*mode) quantize_model(*m, QuantizeOptions{.spec = parse_quant_mode(mode)});
    const std::vector<int32_t> ids{1, 17, 5, 42, 9, 3};
    const std::vector<float> before = kq::testing::prefill_logits(*m, ids);
    int with_bias = 0;
    for (const LinearSlot& s : m->linear_layers()) {
      Tensor b = (*s.op)->bias();
      if (!b.defined()) continue;
      ++with_bias;
      float* p = b.mutable_data<float>();
      for (int64_t i = 0; i < b.numel(); ++i) p[i] = 1e3f;
    }
    EXPECT_GT(with_bias, 0) << "GPT-2's linear layers carry biases";
    EXPECT_EQ(kq::testing::prefill_logits(*m, ids), before);
  }
}

TEST(ApiUserRound17, AwqRefusesASingleCalibrationToken) {
  auto m = Model::load(demo_model());
  for (const CalibrationOptions& c :
       {CalibrationOptions{.tokens = {5}}, CalibrationOptions{.tokens = {5, 6, 7}, .max_tokens = 1}}) {
    try {
      quantize_model(*m, {.spec = parse_quant_mode("awq"), .calibration = c});
      ADD_FAILURE() << "one calibration token was accepted";
    } catch (const InvalidArgument& e) {
      EXPECT_NE(std::string(e.what()).find("at least 2 calibration tokens"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find(c.tokens.size() == 1 ? "calibration.tokens" : "calibration.max_tokens"),
                std::string::npos) << e.what();
    }
  }
  for (const LinearSlot& s : m->linear_layers()) EXPECT_EQ((*s.op)->format(), "f32") << s.name;
  quantize_model(*m, {.spec = parse_quant_mode("awq"), .calibration = {.tokens = {5, 6}}});  // 2 are enough
}

/// A user's Linear wrapping kq's op, as it is, under the format "wrap(<inner format>)".
class WrapLinear final : public Linear {
 public:
  explicit WrapLinear(std::unique_ptr<Linear> inner) : inner_(std::move(inner)) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return "wrap(" + inner_->format() + ")"; }
  Tensor dequantized_weight() const override { return inner_->dequantized_weight(); }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
};

// A quantized layer wrapped by the caller was "not quantized (wrap(int8))", and the advice was to pass other
// QuantizeOptions: it is a user-defined Linear whose format kq cannot save.
TEST(ApiUserRound17, SavingAUserWrappedOpSaysWhatItIs) {
  auto m = Model::load(demo_model());
  const QuantizeOptions o{.spec = parse_quant_mode("int8")};
  (void)quantize_model(*m, o);
  const LinearSlot slot = m->linear_layers()[0];
  *slot.op = std::make_unique<WrapLinear>(std::move(*slot.op));
  TempDir tmp;
  const std::string msg = kq::testing::error_of<InvalidArgument>([&] { save_quantized_model(*m, o, tmp.path / "q"); });
  EXPECT_TRUE(kq::testing::has(msg, "save_quantized_model: layer '" + slot.name +
                                        "' is a user-defined Linear (format 'wrap(int8)'), whose format kq "
                                        "cannot save, but the options say int8"))
      << msg;
  EXPECT_TRUE(kq::testing::has(msg, "put kq's own op back into its LinearSlot before saving")) << msg;
  EXPECT_FALSE(kq::testing::has(msg, "not quantized")) << msg;
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "q"));
}

}  // namespace
}  // namespace kq
