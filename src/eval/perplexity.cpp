// Perplexity under docs/EVALUATION.md (shared data): non-overlapping windows,
// each a fresh forward pass from position 0, scoring tokens 1 … len−1.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <limits>

#include "eval/window_runner.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"

namespace kq {

std::vector<EvalWindow> perplexity_windows(int64_t num_tokens, int ctx, int max_windows) {
  if (ctx < 2) raise<InvalidArgument>("perplexity window length (ctx) must be >= 2, got {}", ctx);
  if (max_windows < 0) raise<InvalidArgument>("max_windows must be >= 0 (0 = all), got {}", max_windows);
  if (num_tokens < 0) raise<InvalidArgument>("perplexity: token count must be >= 0, got {}", num_tokens);
  // The count first (a last window of fewer than 2 tokens is dropped), so that a huge
  // num_tokens is refused instead of allocating for it, and no b + ctx can overflow.
  int64_t count = num_tokens / ctx + (num_tokens % ctx >= 2 ? 1 : 0);
  if (max_windows > 0) count = std::min<int64_t>(count, max_windows);
  constexpr int64_t kMaxWindows = std::numeric_limits<int32_t>::max();
  if (count > kMaxWindows)
    raise<InvalidArgument>("perplexity: {} tokens in windows of {} are {} windows, more than {}; pass max_windows",
                           num_tokens, ctx, count, kMaxWindows);
  std::vector<EvalWindow> w;
  w.reserve(size_t(count));
  for (int64_t i = 0; i < count; ++i) {
    const int64_t b = i * ctx;
    w.push_back({b, num_tokens - b < ctx ? num_tokens : b + ctx});
  }
  return w;
}

PerplexityResult evaluate_perplexity(Model& model, std::span<const int32_t> tokens, int ctx, int max_windows,
                                     const ProgressFn& progress) {
  // Held for every window, not per forward(): a change of the model between two windows from another thread
  // (quantize_model, set_context) would otherwise mix two models in one perplexity.
  const Model::InUse in_use(model, "evaluate_perplexity");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t vocab = model.config().vocab_size;
  const int threads = resolve_threads(model.context().threads);
  PerplexityResult r;
  r.ctx = eval::resolve_ctx(ctx, model.config().max_positions, "ctx");
  const auto windows = perplexity_windows(int64_t(tokens.size()), r.ctx, max_windows);
  if (windows.empty())
    raise<InvalidArgument>("perplexity: the text has {} token{}, fewer than the 2 needed to score one",
                           tokens.size(), tokens.size() == 1 ? "" : "s");
  eval::check_token_ids(tokens, windows.back().end, vocab, "perplexity");

  // Buffers sized to the longest window scored, not to ctx (same windows).
  eval::WindowRunner runner(model, eval::window_capacity(windows));
  for (const EvalWindow& w : windows) {
    const auto win = tokens.subspan(size_t(w.begin), size_t(w.end - w.begin));
    const int64_t len = int64_t(win.size());
    runner.reset(len);
    for (int64_t off = 0; off < len; off += runner.rows()) {
      const int64_t m = std::min(runner.rows(), len - off);
      const float* logits = runner.step(win.subspan(size_t(off), size_t(m)));
      // Row i predicts token off+i+1 of the window (when there is one).
      const int64_t scored = std::min(m, len - 1 - off);
      eval::check_finite_logits(logits, scored, vocab, "perplexity", "the model", r.windows, w, off);
      double nll = 0.0;
#pragma omp parallel for num_threads(threads) reduction(+ : nll) schedule(static)
      for (int64_t i = 0; i < scored; ++i)
        nll += eval::token_nll(logits + i * vocab, vocab, win[size_t(off + i + 1)]);
      r.nll += nll;
      r.scored_tokens += scored;
    }
    ++r.windows;
    if (progress) progress(r.windows, int64_t(windows.size()));
  }
  r.ppl = std::exp(r.nll / double(r.scored_tokens));
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace kq
