// Non-finite logits in evaluate_perplexity and compare_models: one rule for
// both, and for both models of a comparison. A NaN on a token other than the
// target was skipped by the max-subtracted exponentials (a finite perplexity),
// and compare_models checked only the reference model (a damaged candidate
// gave ppl_cand and mean_kl NaN, with no error).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <fmt/format.h>

#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/linear.hpp"
#include "kq/model.hpp"

namespace kq {
namespace {

using kq::testing::demo_model;
using kq::testing::error_of;
using kq::testing::has;

/// A user's Linear: the op it wraps, with the logit of token id `col` in row `row` of each call (when the call
/// has that row) replaced by `value`.
class PoisonLinear final : public Linear {
 public:
  PoisonLinear(std::unique_ptr<Linear> inner, int64_t row, int64_t col, float value)
      : inner_(std::move(inner)), row_(row), col_(col), value_(value) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    inner_->forward(x, M, y, ctx);
    if (row_ < M) y[row_ * out_features() + col_] = value_;
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return "poison(" + inner_->format() + ")"; }
  Tensor dequantized_weight() const override { return inner_->dequantized_weight(); }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  int64_t row_, col_;
  float value_;
};

/// The demo model with the logit of token id 5000 (never a target below) at row 2 of each forward set to `value`.
std::unique_ptr<Model> poisoned_model(float value) {
  auto m = Model::load(demo_model());
  for (const LinearSlot& s : m->linear_layers())
    if (s.is_lm_head) *s.op = std::make_unique<PoisonLinear>(std::move(*s.op), 2, 5000, value);
  return m;
}

/// 24 token ids below 200: windows of 8 are 3 windows, each one prefill.
std::vector<int32_t> text() {
  std::vector<int32_t> t(24);
  for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t(i * 7 % 200);
  return t;
}

constexpr float kNan = std::numeric_limits<float>::quiet_NaN();
constexpr float kInf = std::numeric_limits<float>::infinity();

TEST(NonFiniteLogits, PerplexityRefusesAnyNonFiniteLogitOfAScoredRow) {
  const std::vector<int32_t> ids = text();
  for (const float v : {kNan, kInf, -kInf}) {
    auto m = poisoned_model(v);
    const std::string msg = error_of<Error>([&] { (void)evaluate_perplexity(*m, ids, 8); });
    EXPECT_TRUE(has(msg, "perplexity: the model produced non-finite logits at token 2 of window 0 (index 2 of the "
                         "tokens; the logit of token id 5000 is " +
                         fmt::format("{}", v) + ")"))
        << msg;
  }
  auto clean = Model::load(demo_model());
  EXPECT_TRUE(std::isfinite(evaluate_perplexity(*clean, ids, 8).ppl));
}

TEST(NonFiniteLogits, CompareModelsRefusesThemInEitherModelNamingIt) {
  const std::vector<int32_t> ids = text();
  for (const float v : {kNan, kInf, -kInf}) {
    auto good = Model::load(demo_model());
    auto bad = poisoned_model(v);
    std::string msg = error_of<Error>([&] { (void)compare_models(*good, *bad, ids, 8); });
    EXPECT_TRUE(has(msg, "compare_models: the candidate model produced non-finite logits at token 2 of window 0"))
        << msg;
    msg = error_of<Error>([&] { (void)compare_models(*bad, *good, ids, 8); });
    EXPECT_TRUE(has(msg, "compare_models: the reference model produced non-finite logits at token 2 of window 0"))
        << msg;
  }
}

}  // namespace
}  // namespace kq
