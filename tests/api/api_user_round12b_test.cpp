// Findings of a C++ user of the installed library (round 12, second part),
// each re-run here: an AWQ grid with no upper bound (INT32_MAX overflowed to
// no search at all), a saved folder whose config.json recorded keep patterns
// the model was not quantized with, and token ids out of the vocabulary
// reported by Model::forward without naming the parameter that held them.
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <limits>
#include <string>
#include <vector>

#include "common/test_data.hpp"
#include "common/test_util.hpp"
#include "kq/bench.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"
#include "kq/tokenizer.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;

std::vector<int32_t> demo_calibration_tokens() {
  const std::string text = kq::testing::read_all(demo_model() / "demo-calibration.txt");
  return Tokenizer::load(demo_model()).encode(text.substr(0, 2000));
}

// grid = INT32_MAX returned in seconds with α = 0 for every layer (2 * grid
// wrapped negative: no candidate searched); 1e7 never finished.
TEST(ApiUserRound12b, AwqGridAboveTheMaximumIsRefusedNamingTheField) {
  const std::vector<int32_t> ids = demo_calibration_tokens();
  for (const int grid : {kMaxAwqGrid + 1, 10'000'000, 1 << 30, std::numeric_limits<int>::max(), 0, -5}) {
    auto m = Model::load(demo_model());
    const std::string msg = error_of<InvalidArgument>([&] {
      quantize_model(*m, {.spec = parse_quant_mode("awq"), .calibration = {.tokens = ids, .grid = grid}});
    });
    EXPECT_TRUE(has(msg, "CalibrationOptions::grid")) << grid << ": " << msg;
    EXPECT_TRUE(has(msg, std::to_string(kMaxAwqGrid))) << msg;
    EXPECT_TRUE(has(msg, std::to_string(grid))) << msg;
  }
  auto m = Model::load(demo_model());
  const QuantizeReport r =
      quantize_model(*m, {.spec = parse_quant_mode("awq"), .calibration = {.tokens = ids, .grid = 2}});
  for (const LayerQuantization& l : r.layers) {
    if (!l.quantized) continue;
    EXPECT_TRUE(l.awq_alpha == 0.0 || l.awq_alpha == 0.5) << l.name << " " << l.awq_alpha;
  }
}

// Calibration ids past the vocabulary were "forward: token id 99999 at index 1 ...".
TEST(ApiUserRound12b, AwqCalibrationTokenOutsideTheVocabularyNamesTheField) {
  auto m = Model::load(demo_model());
  std::vector<int32_t> ids = demo_calibration_tokens();
  ids[1] = 99999;
  std::string msg = error_of<InvalidArgument>(
      [&] { quantize_model(*m, {.spec = parse_quant_mode("awq"), .calibration = {.tokens = ids}}); });
  EXPECT_TRUE(has(msg, "QuantizeOptions::calibration.tokens[1] = 99999")) << msg;
  EXPECT_FALSE(has(msg, "forward:")) << msg;
  ids[1] = 5;
  ids.back() = -1;
  msg = error_of<InvalidArgument>(
      [&] { quantize_model(*m, {.spec = parse_quant_mode("awq"), .calibration = {.tokens = ids}}); });
  EXPECT_TRUE(has(msg, "QuantizeOptions::calibration.tokens[" + std::to_string(ids.size() - 1) + "] = -1")) << msg;
}

// A bad prompt id was "forward: token id 99999 at index 1 ..." without naming measure_latency's prompt.
TEST(ApiUserRound12b, LatencyPromptTokenOutsideTheVocabularyNamesThePrompt) {
  auto m = Model::load(demo_model());
  const std::vector<int32_t> prompt{1, 99999, 3};
  const std::string msg = error_of<InvalidArgument>(
      [&] { (void)measure_latency({m.get()}, prompt, {.prompt_tokens = 8, .decode_tokens = 2, .runs = 1}); });
  EXPECT_TRUE(has(msg, "measure_latency: prompt[1] = 99999")) << msg;
  EXPECT_TRUE(has(msg, "models[0]")) << msg;
}

// Saving with keep_patterns the model was not quantized with succeeded and
// config.json recorded "keep_patterns": ["mlp"] beside int8 mlp layers.
TEST(ApiUserRound12b, SaveRefusesKeepPatternsAndLmHeadThatDoNotDescribeTheModel) {
  kq::testing::TempDir tmp;
  auto m = Model::load(demo_model());
  quantize_model(*m, {.spec = parse_quant_mode("int8")});
  std::string msg = error_of<InvalidArgument>([&] {
    save_quantized_model(*m, {.spec = parse_quant_mode("int8"), .keep_patterns = {"mlp"}}, tmp.path / "a");
  });
  EXPECT_TRUE(has(msg, "QuantizeOptions::keep_patterns 'mlp' matches it")) << msg;
  EXPECT_TRUE(has(msg, "mlp")) << msg;
  // lm_head is held unquantized, but quantize_lm_head = true says it would be quantized.
  msg = error_of<InvalidArgument>([&] {
    save_quantized_model(*m, {.spec = parse_quant_mode("int8"), .quantize_lm_head = true}, tmp.path / "b");
  });
  EXPECT_TRUE(has(msg, "QuantizeOptions::quantize_lm_head is true")) << msg;
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "a"));
  EXPECT_FALSE(std::filesystem::exists(tmp.path / "b"));
  EXPECT_NO_THROW(save_quantized_model(*m, {.spec = parse_quant_mode("int8")}, tmp.path / "c"));

  // Quantized with a keep pattern: saving without it would record that the kept layers are quantized.
  auto k = Model::load(demo_model());
  const QuantizeOptions keep_mlp{.spec = parse_quant_mode("int8"), .keep_patterns = {R"(mlp\.c_proj)"}};
  quantize_model(*k, keep_mlp);
  msg = error_of<InvalidArgument>(
      [&] { save_quantized_model(*k, {.spec = parse_quant_mode("int8")}, tmp.path / "d"); });
  EXPECT_TRUE(has(msg, "mlp.c_proj' is not quantized")) << msg;
  EXPECT_TRUE(has(msg, "no QuantizeOptions::keep_patterns entry matches it")) << msg;
  save_quantized_model(*k, keep_mlp, tmp.path / "e");
  EXPECT_NO_THROW(Model::load(tmp.path / "e"));

  // Quantized with the lm_head: saving without quantize_lm_head is refused.
  auto h = Model::load(demo_model());
  quantize_model(*h, {.spec = parse_quant_mode("int8"), .quantize_lm_head = true});
  msg = error_of<InvalidArgument>(
      [&] { save_quantized_model(*h, {.spec = parse_quant_mode("int8")}, tmp.path / "f"); });
  EXPECT_TRUE(has(msg, "QuantizeOptions::quantize_lm_head is false")) << msg;
}

}  // namespace
}  // namespace kq
