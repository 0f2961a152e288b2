// One Model used from two threads at once: forward() and decode_batch() share
// the model's scratch buffers, so the second call throws instead of silently
// corrupting both results (a tester's perplexities differed run to run).
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "common/test_util.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

using namespace kq;

namespace {

ModelConfig tiny_gpt2() { return kq::testing::tiny_gpt2_config(); }

/// Latches for holding the first forward() inside a layer until the test lets it go.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool inside = false, released = false;
};

/// Forwards to `inner`; the first call announces itself and waits (at most 10 s) for the release,
/// later calls pass straight through.
class HoldingLinear : public Linear {
 public:
  HoldingLinear(std::unique_ptr<Linear> inner, Gate& gate) : inner_(std::move(inner)), gate_(gate) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    {
      std::unique_lock lock(gate_.mu);
      if (!gate_.inside) {
        gate_.inside = true;
        gate_.cv.notify_all();
        gate_.cv.wait_for(lock, std::chrono::seconds(10), [&] { return gate_.released; });
      }
    }
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return inner_->format(); }
  Tensor dequantized_weight() const override { return inner_->dequantized_weight(); }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  Gate& gate_;
};

}  // namespace

TEST(ModelThreads, SecondThreadOnTheSameModelThrowsInsteadOfCorrupting) {
  auto m = Model::random(tiny_gpt2(), 3);
  Gate gate;
  std::unique_ptr<Linear>& slot = *m->linear_layers()[0].op;
  slot = std::make_unique<HoldingLinear>(std::move(slot), gate);
  const std::vector<int32_t> tokens = {1, 2, 3};
  std::string first_error;
  std::thread first([&] {
    try {
      KVCache cache = m->make_cache();
      m->forward(tokens, cache, nullptr);
    } catch (const std::exception& e) {
      first_error = e.what();
    }
  });
  {
    std::unique_lock lock(gate.mu);
    ASSERT_TRUE(gate.cv.wait_for(lock, std::chrono::seconds(10), [&] { return gate.inside; }));
  }
  // The first forward() is held inside layer 0: this one overlaps it for sure.
  std::string msg, batch_msg;
  try {
    KVCache cache = m->make_cache();
    m->forward(tokens, cache, nullptr);
  } catch (const InvalidArgument& e) {
    msg = e.what();
  }
  try {
    KVCache cache = m->make_cache();
    const int32_t token = 1;
    KVCache* caches[1] = {&cache};
    m->decode_batch(std::span(&token, 1), caches, nullptr);
  } catch (const InvalidArgument& e) {
    batch_msg = e.what();
  }
  {
    std::lock_guard lock(gate.mu);
    gate.released = true;
  }
  gate.cv.notify_all();
  first.join();
  EXPECT_EQ(msg,
            "Model::forward called while another call on the same Model runs (a Model is not thread-safe; use one "
            "Model per thread)");
  EXPECT_NE(batch_msg.find("Model::decode_batch called while another call on the same Model runs"), std::string::npos)
      << batch_msg;
  EXPECT_EQ(first_error, "");  // the call already running is not disturbed
  // Once it is done, the model serves any thread again.
  std::thread later([&] {
    KVCache cache = m->make_cache();
    EXPECT_NO_THROW(m->forward(tokens, cache, nullptr));
  });
  later.join();
}
