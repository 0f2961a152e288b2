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

}  // namespace
}  // namespace kq
