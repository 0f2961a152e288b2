// Findings of a C++ user of the installed library (round 16), each re-run
// here: a null op or an op of another shape put into a LinearSlot, refused by
// forward but crashing (or quantized, planned, and saved as a folder that does
// not load) in the other functions that read the layers; a caller's own
// Linear whose dequantized_weight() is BF16, undefined or of another shape; a
// hand-edited plan's chosen index in AdaptivePlan::to_options.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tensor.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;
using kq::testing::TempDir;

/// Expects `f` to throw InvalidArgument whose message holds `want`.
void expect_refused(const std::function<void()>& f, const std::string& want) {
  const std::string e = error_of<InvalidArgument>(f);
  EXPECT_TRUE(has(e, want)) << e << "\nwanted: " << want;
}

// A null op in slot 0 (forward said "holds no op"; these crashed with SIGSEGV): every function that reads the
// layers refuses it the same way, before anything is quantized or written.
TEST(ApiUserRound16, NullOpInASlotIsRefusedByEveryFunctionThatReadsTheLayers) {
  auto m = Model::load(demo_model());
  const std::string layer = m->linear_layers()[0].name;
  const std::string want = fmt::format("layer '{}' holds no op (a null Linear was put into its LinearSlot)", layer);
  m->linear_layers()[0].op->reset();
  expect_refused([&] { (void)m->weight_bytes(); }, "weight_breakdown: " + want);
  expect_refused([&] { (void)quantize_model(*m, {}); }, "quantize_model: " + want);
  expect_refused([&] { (void)plan_adaptive_precision(*m, {}); }, "adaptive precision: " + want);
  expect_refused([&] { (void)check_adaptive_options(*m, {}); }, "adaptive precision: " + want);
  expect_refused([&] { (void)quantize_model_adaptive(*m, {}); }, "adaptive precision: " + want);

  auto q = Model::load(demo_model());
  (void)quantize_model(*q, {});
  q->linear_layers()[0].op->reset();
  TempDir tmp;
  const std::filesystem::path out = tmp.path / "q";
  expect_refused([&] { save_quantized_model(*q, {}, out); }, "save_quantized_model: " + want);
  EXPECT_FALSE(std::filesystem::exists(out));
}

// Another layer's op in slot 0 ([d, d] c_proj into the [3d, d] c_attn): forward refused it, but quantize_model
// quantized it, plan_adaptive_precision planned it and save_quantized_model wrote a folder that did not load.
TEST(ApiUserRound16, OpOfAnotherShapeInASlotIsRefusedByQuantizePlanAndSave) {
  auto m = Model::load(demo_model());
  auto donor = Model::load(demo_model());
  const std::vector<LinearSlot> slots = m->linear_layers();
  const int64_t out_f = (*slots[0].op)->out_features(), in_f = (*slots[0].op)->in_features();
  *slots[0].op = std::move(*donor->linear_layers()[1].op);
  const int64_t wrong_out = (*slots[0].op)->out_features(), wrong_in = (*slots[0].op)->in_features();
  ASSERT_NE(wrong_out, out_f);
  const std::string want =
      fmt::format("layer '{}' holds an op of {} out x {} in features, but the model maps {} input features to {} "
                  "output features; a replacement put into a LinearSlot must keep the layer's shape",
                  slots[0].name, wrong_out, wrong_in, in_f, out_f);
  expect_refused([&] { (void)quantize_model(*m, {}); }, "quantize_model: " + want);
  EXPECT_EQ((*slots[0].op)->format(), "f32");  // nothing quantized
  expect_refused([&] { (void)plan_adaptive_precision(*m, {}); }, "adaptive precision: " + want);

  auto q = Model::load(demo_model());
  auto qdonor = Model::load(demo_model());
  (void)quantize_model(*q, {});
  (void)quantize_model(*qdonor, {});
  *q->linear_layers()[0].op = std::move(*qdonor->linear_layers()[1].op);
  TempDir tmp;
  const std::filesystem::path out = tmp.path / "q";
  expect_refused([&] { save_quantized_model(*q, {}, out); }, "save_quantized_model: " + want);
  EXPECT_FALSE(std::filesystem::exists(out));
}

/// A caller's own Linear wrapping kq's op, whose dequantized_weight() is replaced by `weight(inner)`.
class OwnWeightLinear final : public Linear {
 public:
  using Weight = std::function<Tensor(const Linear& inner)>;
  OwnWeightLinear(std::unique_ptr<Linear> inner, Weight weight) : inner_(std::move(inner)), weight_(weight) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return "mine"; }
  Tensor dequantized_weight() const override { return weight_(*inner_); }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  Weight weight_;
};

/// The demo model with slot 0 holding an OwnWeightLinear over its op; its name in *layer.
std::unique_ptr<Model> with_own_weight(const OwnWeightLinear::Weight& weight, std::string* layer) {
  auto m = Model::load(demo_model());
  const LinearSlot s = m->linear_layers()[0];
  *s.op = std::make_unique<OwnWeightLinear>(std::move(*s.op), weight);
  *layer = s.name;
  return m;
}

// A caller's op whose dequantized_weight() is BF16: quantize_model converted it, plan_adaptive_precision crashed
// in weight_entropy_bits (it read the BF16 bytes as floats). Both now convert it to F32 the same way.
TEST(ApiUserRound16, Bf16DequantizedWeightIsConvertedByQuantizeAndPlan) {
  const OwnWeightLinear::Weight bf16 = [](const Linear& inner) {
    const Tensor w = inner.dequantized_weight();
    Tensor o = Tensor::empty(DType::BF16, w.shape());
    convert_from_f32(DType::BF16, w.data<float>(), o.raw_mut(), size_t(w.numel()));
    return o;
  };
  std::string layer;
  const AdaptivePlan plan = plan_adaptive_precision(*with_own_weight(bf16, &layer), {});
  ASSERT_FALSE(plan.layers.empty());
  EXPECT_EQ(plan.layers[0].name, layer);
  EXPECT_GT(plan.layers[0].entropy_bits, 0.0);
  const QuantizeReport r = quantize_model(*with_own_weight(bf16, &layer), {});
  EXPECT_TRUE(r.layers[0].quantized);
}

// A caller's op whose dequantized_weight() is undefined, of another shape or an integer tensor: the plan crashed
// (undefined) or planned silently (shape); quantize_model blamed the bias for a wrong shape. Both refuse it in one
// check, naming the layer.
TEST(ApiUserRound16, BadDequantizedWeightIsRefusedByQuantizeAndPlanNamingTheLayer) {
  struct Case {
    OwnWeightLinear::Weight weight;
    std::string what;
  };
  const std::vector<Case> cases = {
      {[](const Linear&) { return Tensor(); }, "returned an undefined tensor from dequantized_weight()"},
      {[](const Linear&) { return Tensor::zeros(DType::F32, {3, 3}); },
       "returned a tensor of shape [3, 3] from dequantized_weight(), but the op has"},
      {[](const Linear& inner) { return Tensor::zeros(DType::I8, {inner.out_features(), inner.in_features()}); },
       "returned a tensor of dtype I8 from dequantized_weight()"},
  };
  for (const Case& c : cases) {
    std::string layer;
    auto m = with_own_weight(c.weight, &layer);
    const std::string want = fmt::format("layer '{}': its op (mine) {}", layer, c.what);
    expect_refused([&] { (void)plan_adaptive_precision(*m, {}); }, want);
    const std::string q = error_of<InvalidArgument>([&] { (void)quantize_model(*m, {}); });
    EXPECT_TRUE(has(q, want)) << q;
    EXPECT_FALSE(has(q, "bias")) << q;
  }
}

// A hand-edited plan's chosen index: lowest_precision_spec named the layer, to_options threw std::out_of_range.
TEST(ApiUserRound16, ToOptionsNamesABadChosenIndex) {
  for (const int chosen : {17, -1}) {
    AdaptivePlan plan;
    LayerAnalysis l;
    l.name = "transformer.h.0.mlp.c_fc";
    l.candidates.resize(2);
    l.chosen = chosen;
    plan.layers.push_back(l);
    const std::string want =
        fmt::format("layer 'transformer.h.0.mlp.c_fc' has chosen = {}, outside its 2 candidates", chosen);
    expect_refused([&] { (void)plan.to_options(); }, "AdaptivePlan::to_options: " + want);
    expect_refused([&] { (void)lowest_precision_spec(plan); }, "lowest_precision_spec: " + want);
  }
}

}  // namespace
}  // namespace kq
