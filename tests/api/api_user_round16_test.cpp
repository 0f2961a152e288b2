// Findings of a C++ user of the installed library (round 16), each re-run
// here: a null op or an op of another shape put into a LinearSlot, refused by
// forward but crashing (or quantized, planned, and saved as a folder that does
// not load) in the other functions that read the layers.
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

}  // namespace
}  // namespace kq
