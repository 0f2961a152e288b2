#pragma once
// The logits of one prefill, for tests that compare models (reloaded, quantized, moved) token for token.
#include <cstdint>
#include <vector>

#include "kq/model.hpp"

namespace kq::testing {

/// Logits F32 [tokens, vocab] of one forward pass of `tokens` through `m` (a fresh KV cache of that length).
inline std::vector<float> prefill_logits(Model& m, const std::vector<int32_t>& tokens) {
  std::vector<float> out(tokens.size() * size_t(m.config().vocab_size));
  KVCache cache = m.make_cache(int64_t(tokens.size()));
  m.forward(tokens, cache, out.data(), /*all_logits=*/true);
  return out;
}

}  // namespace kq::testing
