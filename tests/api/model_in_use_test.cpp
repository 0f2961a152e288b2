// quantize_model and quantize_model_adaptive replace a Model's ops: while
// another thread's forward() on the same Model runs they throw instead of
// swapping ops under it, and a forward() while they run throws likewise
// (Model::InUse, include/kq/model.hpp).
#include <gtest/gtest.h>

#include <cstdint>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "common/holding_linear.hpp"
#include "common/test_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/error.hpp"
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

}  // namespace
}  // namespace kq
