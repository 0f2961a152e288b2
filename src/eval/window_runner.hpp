#pragma once
// Runs a model over one evaluation window chunk by chunk, so logits never
// need more than prefill_chunk() × vocab floats whatever the window length.
#include <cstdint>
#include <span>
#include <vector>

#include "kq/model.hpp"

namespace kq::eval {

/// Resolves and checks a window length: 0 = `max_positions`; throws
/// InvalidArgument (naming the value and the limit) for ctx < 0, ctx == 1 or
/// ctx > max_positions.
int resolve_ctx(int ctx, int64_t max_positions);

/// A model, a KV cache of `ctx` tokens and a logits buffer of rows() × vocab.
class WindowRunner {
 public:
  WindowRunner(Model& model, int ctx);
  /// Rows per step.
  int64_t rows() const { return Model::prefill_chunk(); }
  /// Starts a new window at position 0.
  void reset() { cache_.reset(); }
  /// Feeds the next `tokens` (at most rows()) of the window; returns their
  /// logits, F32 [tokens.size(), vocab], valid until the next call.
  const float* step(std::span<const int32_t> tokens);

 private:
  Model& model_;
  KVCache cache_;
  std::vector<float> logits_;
};

/// −log softmax(row)[target] over a row of `vocab` logits (double).
double token_nll(const float* row, int64_t vocab, int32_t target);

}  // namespace kq::eval
