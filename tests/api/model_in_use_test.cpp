// quantize_model and quantize_model_adaptive replace a Model's ops: while
// another thread's forward() on the same Model runs they throw instead of
// swapping ops under it, and a forward() while they run throws likewise
// (Model::InUse, include/kq/model.hpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "common/holding_linear.hpp"
#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/bench.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {
namespace {

using kq::testing::error_of;

/// The message Model::InUse gives a call named `what`.
std::string in_use_message(const std::string& what) {
  return what + " called while another call on the same Model runs (a Model is not thread-safe; use one Model "
                "per thread)";
}

/// Layer 0 (the held one) is kept, so that a quantization that got past the check would not free the op that
/// the held forward is running in.
const std::vector<std::string> kKeepLayer0 = {"h\\.0\\.attn\\.c_attn"};

TEST(ModelInUse, QuantizeModelThrowsWhileAForwardRunsAndLeavesItsResults) {
  const ModelConfig config = kq::testing::tiny_gpt2_config();
  const std::vector<int32_t> tokens = {1, 2, 3, 4, 5, 6, 7, 8};
  std::vector<float> alone(size_t(8 * config.vocab_size)), logits(alone.size());
  std::thread([&] {  // on a fresh thread too: the same OpenMP default thread count
    auto ref = Model::random(config, 5);
    KVCache cache = ref->make_cache();
    ref->forward(tokens, cache, alone.data());
  }).join();
  auto m = Model::random(config, 5);
  kq::testing::Gate gate;
  kq::testing::hold_layer0(*m, gate);
  std::string first_error;
  std::thread first([&] {
    try {
      KVCache cache = m->make_cache();
      m->forward(tokens, cache, logits.data());
    } catch (const std::exception& e) {
      first_error = e.what();
    }
  });
  ASSERT_TRUE(gate.wait_inside());
  QuantizeOptions q;
  q.keep_patterns = kKeepLayer0;
  AdaptiveOptions a;
  a.target_reduction = 0.5;
  a.keep_patterns = kKeepLayer0;
  const std::string quantize_error = error_of<InvalidArgument>([&] { quantize_model(*m, q); });
  const std::string adaptive_error = error_of<InvalidArgument>([&] { quantize_model_adaptive(*m, a); });
  gate.release();
  first.join();
  EXPECT_EQ(quantize_error, in_use_message("quantize_model"));
  EXPECT_EQ(adaptive_error, in_use_message("quantize_model_adaptive"));
  EXPECT_EQ(first_error, "");
  EXPECT_EQ(logits, alone);  // bit for bit: no op was replaced under the running forward
  for (const LinearSlot& s : m->linear_layers()) EXPECT_EQ((*s.op)->format(), "f32") << s.name;
  // Once the forward is done, the model can be quantized.
  EXPECT_NO_THROW(quantize_model(*m, q));
}

TEST(ModelInUse, ForwardThrowsWhileQuantizeModelRuns) {
  auto m = Model::random(kq::testing::tiny_gpt2_config(), 5);
  kq::testing::Gate gate;
  kq::testing::hold_layer0(*m, gate);  // quantize_model is held reading layer 0's weight
  std::string quantize_error;
  QuantizeReport report;
  std::thread quantizing([&] {
    try {
      report = quantize_model(*m, QuantizeOptions{});
    } catch (const std::exception& e) {
      quantize_error = e.what();
    }
  });
  ASSERT_TRUE(gate.wait_inside());
  const std::vector<int32_t> tokens = {1, 2, 3};
  const std::string forward_error = error_of<InvalidArgument>([&] {
    KVCache cache = m->make_cache();
    m->forward(tokens, cache, nullptr);
  });
  const std::string context_error = error_of<InvalidArgument>([&] { m->set_context(ExecContext{Device::CPU, 1}); });
  gate.release();
  quantizing.join();
  EXPECT_EQ(forward_error, in_use_message("Model::forward"));
  EXPECT_EQ(context_error, in_use_message("Model::set_context"));
  EXPECT_EQ(quantize_error, "");
  EXPECT_GT(report.quantized_elements, 0);
  EXPECT_EQ(m->context().threads, 0);
}

/// The error message (empty: none) of `call` run on a thread of its own, joined before returning: a call from
/// "another thread" made at a chosen point of the calling thread's work.
std::string error_on_other_thread(const std::function<void()>& call) {
  std::string error;
  std::thread([&] {
    try {
      call();
    } catch (const std::exception& e) {
      error = e.what();
    }
  }).join();
  return error;
}

/// 4 windows of 16 tokens (tiny_gpt2_config: 16 positions, vocabulary 64).
std::vector<int32_t> four_windows() {
  std::vector<int32_t> t(64);
  for (size_t i = 0; i < t.size(); ++i) t[i] = int32_t((i * 37 + 11) % 64);
  return t;
}

// tester24 F1: the mark was taken per forward(), so a quantize_model from another thread between two windows
// went through and the perplexity mixed FP32 and INT8 windows without an error.
TEST(ModelInUse, EvaluatePerplexityHoldsTheModelBetweenWindows) {
  auto m = Model::random(kq::testing::tiny_gpt2_config(), 5);
  const std::vector<int32_t> tokens = four_windows();
  const PerplexityResult alone = evaluate_perplexity(*m, tokens);
  ASSERT_EQ(alone.windows, 4);
  std::string quantize_error, context_error, nested_error = "not run";
  const PerplexityResult r = evaluate_perplexity(*m, tokens, 0, 0, [&](int64_t done, int64_t) {
    if (done != 2) return;
    quantize_error = error_on_other_thread([&] { quantize_model(*m, QuantizeOptions{}); });
    context_error = error_on_other_thread([&] { m->set_context(ExecContext{Device::CPU, 1}); });
    // The thread holding the mark may still run the model (a nested forward()).
    try {
      KVCache cache = m->make_cache();
      m->forward(std::span<const int32_t>(tokens.data(), 3), cache, nullptr);
      nested_error.clear();
    } catch (const std::exception& e) {
      nested_error = e.what();
    }
  });
  EXPECT_EQ(quantize_error, in_use_message("quantize_model"));
  EXPECT_EQ(context_error, in_use_message("Model::set_context"));
  EXPECT_EQ(nested_error, "");
  EXPECT_EQ(r.ppl, alone.ppl);  // bit for bit: one model for every window
  EXPECT_EQ(r.nll, alone.nll);
  for (const LinearSlot& s : m->linear_layers()) EXPECT_EQ((*s.op)->format(), "f32") << s.name;
  EXPECT_EQ(m->context().threads, 0);
  // The mark is let go at the end: the model can be changed again.
  EXPECT_NO_THROW(quantize_model(*m, QuantizeOptions{}));
}

TEST(ModelInUse, CompareModelsHoldsBothModelsBetweenWindows) {
  auto ref = Model::random(kq::testing::tiny_gpt2_config(), 5);
  auto cand = Model::random(kq::testing::tiny_gpt2_config(), 6);
  const std::vector<int32_t> tokens = four_windows();
  const ComparisonResult alone = compare_models(*ref, *cand, tokens);
  std::string ref_error, cand_error;
  const ComparisonResult r = compare_models(*ref, *cand, tokens, 0, 0, [&](int64_t done, int64_t) {
    if (done != 2) return;
    ref_error = error_on_other_thread([&] { quantize_model(*ref, QuantizeOptions{}); });
    cand_error = error_on_other_thread([&] { quantize_model(*cand, QuantizeOptions{}); });
  });
  EXPECT_EQ(ref_error, in_use_message("quantize_model"));
  EXPECT_EQ(cand_error, in_use_message("quantize_model"));
  EXPECT_EQ(r.nll_ref, alone.nll_ref);
  EXPECT_EQ(r.nll_cand, alone.nll_cand);
  EXPECT_EQ(r.mean_kl, alone.mean_kl);
  // The same Model as reference and candidate: the second mark, on the same thread, passes.
  const ComparisonResult self = compare_models(*ref, *ref, tokens);
  EXPECT_EQ(self.nll_ref, self.nll_cand);
  EXPECT_EQ(self.top1_agreement, 1.0);
}

/// Runs `hook` (once) at the first forward() through it, then the wrapped op.
class HookLinear : public Linear {
 public:
  HookLinear(std::unique_ptr<Linear> inner, std::function<void()> hook)
      : inner_(std::move(inner)), hook_(std::move(hook)) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    if (hook_) std::exchange(hook_, {})();
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return inner_->format(); }
  Tensor dequantized_weight() const override { return inner_->dequantized_weight(); }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  mutable std::function<void()> hook_;
};

// measure_latency runs model a, then b, then a, ...: while b's first forward runs, a is between two of its
// forward() calls; another thread's set_context on a then throws (it went through with the per-forward mark).
TEST(ModelInUse, MeasureLatencyHoldsEveryModelBetweenRuns) {
  auto a = Model::random(kq::testing::tiny_gpt2_config(), 5);
  auto b = Model::random(kq::testing::tiny_gpt2_config(), 6);
  std::string context_error = "not run";
  std::unique_ptr<Linear>& slot = *b->linear_layers()[0].op;
  slot = std::make_unique<HookLinear>(std::move(slot), [&] {
    context_error = error_on_other_thread([&] { a->set_context(ExecContext{Device::CPU, 1}); });
  });
  LatencyOptions o;
  o.prompt_tokens = 4;
  o.decode_tokens = 2;
  o.runs = 1;
  const std::vector<int32_t> prompt = {1, 2, 3};
  ASSERT_NO_THROW(measure_latency({a.get(), b.get()}, prompt, o));
  EXPECT_EQ(context_error, in_use_message("Model::set_context"));
  EXPECT_EQ(a->context().threads, 0);
  EXPECT_NO_THROW(a->set_context(ExecContext{Device::CPU, 1}));  // let go at the end
}

}  // namespace
}  // namespace kq
