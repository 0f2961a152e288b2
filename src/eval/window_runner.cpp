#include "eval/window_runner.hpp"

#include <algorithm>
#include <cmath>

#include <fmt/format.h>

#include "core/out_of_memory.hpp"
#include "kernels/cpu/ops_softmax.hpp"
#include "kq/error.hpp"

namespace kq::eval {

int resolve_ctx(int ctx, int64_t max_positions, const char* name) {
  if (ctx == 0) return int(max_positions);
  if (ctx < 2) raise<InvalidArgument>("context length ({}) {}: a window needs at least 2 tokens", name, ctx);
  if (ctx > max_positions)
    raise<InvalidArgument>("context length ({}) {} exceeds the model's maximum of {} position{}", name, ctx,
                           max_positions, max_positions == 1 ? "" : "s");
  return ctx;
}

std::optional<size_t> first_token_outside(std::span<const int32_t> tokens, int64_t vocab) {
  for (size_t i = 0; i < tokens.size(); ++i)
    if (tokens[i] < 0 || tokens[i] >= vocab) return i;
  return std::nullopt;
}

void check_token_ids(std::span<const int32_t> tokens, int64_t end, int64_t vocab, const char* what) {
  const size_t n = size_t(std::clamp<int64_t>(end, 0, int64_t(tokens.size())));
  if (const auto i = first_token_outside(tokens.first(n), vocab))
    raise<InvalidArgument>("{}: token id {} at index {} is outside the vocabulary [0, {})", what, tokens[*i], *i,
                           vocab);
}

int64_t window_capacity(std::span<const EvalWindow> windows) {
  int64_t longest = 0;
  for (const EvalWindow& w : windows) longest = std::max(longest, w.end - w.begin);
  return longest;
}

namespace {
// make_cache(0) would mean "the model's whole context": the case this avoids.
int64_t checked_capacity(int64_t capacity) {
  if (capacity < 1) raise<InvalidArgument>("WindowRunner: capacity must be >= 1 token, got {}", capacity);
  return capacity;
}

/// The logits buffer, `rows` × `vocab` floats; an OutOfMemory naming it when it cannot be allocated (a
/// vocabulary of 4M entries takes 4 GiB at 256 rows).
std::vector<float> logits_buffer(int64_t rows, int64_t vocab) {
  const size_t n = size_t(rows) * size_t(vocab);
  return naming_allocation(
      n * sizeof(float),
      [&] { return fmt::format("evaluation: the F32 logits of {} tokens × a vocabulary of {}", rows, vocab); },
      [&] { return std::vector<float>(n); });
}
}  // namespace

WindowRunner::WindowRunner(Model& model, int64_t capacity)
    : model_(model),
      cache_(model.make_cache(checked_capacity(capacity))),
      rows_(std::min(Model::prefill_chunk(), capacity)),
      logits_(logits_buffer(rows_, model.config().vocab_size)) {}

const float* WindowRunner::step(std::span<const int32_t> tokens) {
  // The window's length as the pass's end (a caller's window shorter than it said: this call's own end).
  const int64_t end = cache_.size() + int64_t(tokens.size());
  model_.forward(tokens, cache_, logits_.data(), /*all_logits=*/true, std::max(length_, end));
  return logits_.data();
}

double token_nll(const float* row, int64_t vocab, int32_t target) {
  return cpu::log_sum_exp(row, vocab) - double(row[target]);
}

void check_finite_logits(const float* logits, int64_t rows, int64_t vocab, const char* what, const char* who,
                         int64_t window, const EvalWindow& w, int64_t first_row) {
  for (int64_t i = 0; i < rows; ++i)
    for (int64_t v = 0; v < vocab; ++v) {
      const float x = logits[i * vocab + v];
      if (std::isfinite(x)) continue;
      const int64_t t = first_row + i;  // the row's position in the window
      raise<Error>(
          "{}: {} produced non-finite logits at token {} of window {} (index {} of the tokens; the logit "
          "of token id {} is {}): its weights or activations overflow (damaged or out-of-range weights?)",
          what, who, t, window, w.begin + t, v, x);
    }
}

}  // namespace kq::eval
