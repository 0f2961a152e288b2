#pragma once
// A Linear that holds the first call made through it until the test lets it
// go, so that a second thread's call on the same Model overlaps it for sure
// (Model::InUse tests: tests/models/model_threads_test.cpp, tests/api/model_in_use_test.cpp).
#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <utility>

#include "kq/linear.hpp"
#include "kq/model.hpp"

namespace kq::testing {

/// Latches for holding the first call inside a layer until the test lets it go.
struct Gate {
  std::mutex mu;
  std::condition_variable cv;
  bool inside = false, released = false;

  /// Blocks (at most 10 s) until a call is held inside; false on time-out.
  bool wait_inside() {
    std::unique_lock lock(mu);
    return cv.wait_for(lock, std::chrono::seconds(10), [&] { return inside; });
  }
  /// Lets the held call (and every later one) go.
  void release() {
    {
      std::lock_guard lock(mu);
      released = true;
    }
    cv.notify_all();
  }
  /// The first caller announces itself and waits (at most 10 s) for release(); later callers pass.
  void hold_first() {
    std::unique_lock lock(mu);
    if (inside) return;
    inside = true;
    cv.notify_all();
    cv.wait_for(lock, std::chrono::seconds(10), [&] { return released; });
  }
};

/// Forwards everything to `inner`; the first forward() or dequantized_weight() call (a Model's forward
/// running through the layer, or quantize_model reading its weight) is held by `gate`.
class HoldingLinear : public Linear {
 public:
  HoldingLinear(std::unique_ptr<Linear> inner, Gate& gate) : inner_(std::move(inner)), gate_(gate) {}
  int64_t in_features() const override { return inner_->in_features(); }
  int64_t out_features() const override { return inner_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    gate_.hold_first();
    inner_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return inner_->weight_bytes(); }
  std::string format() const override { return inner_->format(); }
  Tensor dequantized_weight() const override {
    gate_.hold_first();
    return inner_->dequantized_weight();
  }
  Tensor bias() const override { return inner_->bias(); }

 private:
  std::unique_ptr<Linear> inner_;
  Gate& gate_;
};

/// Wraps `m`'s layer 0 op (the first a forward runs, the first quantize_model reads) in a HoldingLinear of `gate`.
inline void hold_layer0(Model& m, Gate& gate) {
  std::unique_ptr<Linear>& slot = *m.linear_layers()[0].op;
  slot = std::make_unique<HoldingLinear>(std::move(slot), gate);
}

}  // namespace kq::testing
