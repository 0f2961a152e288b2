#pragma once
// Runs a model over one evaluation window chunk by chunk, so logits never
// need more than prefill_chunk() × vocab floats whatever the window length
// (nor more rows than the longest window has).
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kq/eval.hpp"
#include "kq/model.hpp"

namespace kq::eval {

/// Resolves and checks a window length: 0 = `max_positions`; throws
/// InvalidArgument (naming the value and the limit) for ctx < 0, ctx == 1 or
/// ctx > max_positions. `name`: the parameter as the caller's user set it
/// ("context length (<name>) ...": "ctx", "BenchOptions::ctx").
int resolve_ctx(int ctx, int64_t max_positions, const char* name = "ctx");

/// The index of the first of `tokens` that is not an id of a vocabulary of
/// `vocab` (< 0 or >= vocab), if any. The one check behind check_token_ids
/// and the callers that name their own parameter (AWQ's calibration tokens,
/// measure_latency's prompt).
std::optional<size_t> first_token_outside(std::span<const int32_t> tokens, int64_t vocab);

/// Checks, before any window runs, that tokens[0, end) are ids of a
/// vocabulary of `vocab`; throws InvalidArgument naming `what` ("perplexity"),
/// the id and its index in `tokens` (a forward names the index in its window).
void check_token_ids(std::span<const int32_t> tokens, int64_t end, int64_t vocab, const char* what);

/// The KV cache length, in tokens, that scoring `windows` needs: the length
/// of the longest window, i.e. min(ctx, tokens in the text) under the
/// docs/EVALUATION.md protocol (perplexity_windows), not ctx itself, so a
/// model whose context is 10^6 positions scoring a 1,655-token text holds a
/// cache (and attention scratch) of 1,655 positions. The windows, and so the
/// scored tokens and the perplexity, are unchanged. 0 for no windows.
int64_t window_capacity(std::span<const EvalWindow> windows);

/// A model, a KV cache of `capacity` tokens (window_capacity of the windows
/// it will run) and a logits buffer of rows() × vocab.
class WindowRunner {
 public:
  /// Throws InvalidArgument when `capacity` is < 1 or more than the model's
  /// positions (Model::make_cache), OutOfMemory naming the logits buffer
  /// (rows() × vocab floats) when it cannot be allocated.
  WindowRunner(Model& model, int64_t capacity);
  /// The KV cache length in tokens: the longest window this runner can score.
  int64_t capacity() const { return cache_.capacity(); }
  /// Rows per step: Model::prefill_chunk(), or capacity() when that is less (a window is at most capacity()
  /// tokens: one step then, as with prefill_chunk() rows).
  int64_t rows() const { return rows_; }
  /// Starts a new window of `length` tokens (<= capacity()) at position 0. Its chunks are one forward pass
  /// of the model, as transformers runs a window (Model::forward's pass_end: the RoPE of Phi-3's longrope
  /// depends on the pass's length).
  void reset(int64_t length) {
    cache_.reset();
    length_ = length;
  }
  /// Feeds the next `tokens` (at most rows()) of the window; returns their
  /// logits, F32 [tokens.size(), vocab], valid until the next call.
  const float* step(std::span<const int32_t> tokens);

 private:
  Model& model_;
  KVCache cache_;
  int64_t rows_;
  std::vector<float> logits_;
  int64_t length_ = 0;  // the window's length (reset)
};

/// −log softmax(row)[target] over a row of `vocab` logits (double).
double token_nll(const float* row, int64_t vocab, int32_t target);

/// Checks the `rows` scored logits rows, F32 [rows, vocab], of one step of a window: row i predicts token
/// first_row + i + 1 of window `window` (tokens [w.begin, w.end) of the text). Every logit must be finite:
/// a NaN or an infinity (even -inf, which the Sampler treats as a masked token) makes the metrics
/// meaningless, or is silently skipped by the max-subtracted exponentials. Throws Error "<what>: <who>
/// produced non-finite logits at token <t> of window <n> (...)" (who: "the candidate model"), naming the first.
void check_finite_logits(const float* logits, int64_t rows, int64_t vocab, const char* what, const char* who,
                         int64_t window, const EvalWindow& w, int64_t first_row);

}  // namespace kq::eval
