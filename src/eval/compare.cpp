// Reference vs candidate on the same windows: perplexities, KL divergence of
// the next-token distributions, and top-1 agreement.
#include <algorithm>
#include <chrono>
#include <cmath>

#include "eval/window_runner.hpp"
#include "kernels/cpu/ops_softmax.hpp"
#include "kernels/cpu/ops_vec.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"

namespace kq {
namespace {

struct RowStats {
  double nll_ref = 0, nll_cand = 0, kl = 0, agree = 0;
};

// One position: logits rows of both models and the true next token.
RowStats compare_row(const float* r, const float* c, int64_t vocab, int32_t target) {
  const double lse_r = cpu::log_sum_exp(r, vocab), lse_c = cpu::log_sum_exp(c, vocab);
  // KL = Σ p_r · (log p_r − log p_c) = Σ p_r · (r − c) − (lse_r − lse_c), with Σ p_r
  // as computed (not assumed 1) so rounding in the exponentials cancels.
  double weighted = 0.0, mass = 0.0;
  cpu::vec_kernels().kl_sums(r, c, lse_r, vocab, &weighted, &mass);
  const double kl = weighted / mass - (lse_r - lse_c);
  RowStats st;
  st.nll_ref = lse_r - double(r[target]);
  st.nll_cand = lse_c - double(c[target]);
  st.kl = kl;
  st.agree = cpu::argmax(r, vocab) == cpu::argmax(c, vocab) ? 1.0 : 0.0;
  return st;
}

}  // namespace

ComparisonResult compare_models(Model& ref, Model& cand, std::span<const int32_t> tokens, int ctx,
                                int max_windows, const ProgressFn& progress) {
  // Both models, for every window (evaluate_perplexity); `ref` and `cand` may be the same Model (the thread
  // holding the mark passes).
  const Model::InUse ref_in_use(ref, "compare_models");
  const Model::InUse cand_in_use(cand, "compare_models");
  const auto t0 = std::chrono::steady_clock::now();
  const int64_t vocab = ref.config().vocab_size;
  if (cand.config().vocab_size != vocab)
    raise<InvalidArgument>("compare_models: vocabulary sizes differ (reference {}, candidate {})", vocab,
                           cand.config().vocab_size);
  const int threads = resolve_threads(ref.context().threads);
  ComparisonResult r;
  const ModelConfig& shorter =
      ref.config().max_positions <= cand.config().max_positions ? ref.config() : cand.config();
  r.ctx = eval::resolve_ctx(ctx, shorter.max_positions, "ctx");
  const auto windows = perplexity_windows(int64_t(tokens.size()), r.ctx, max_windows);
  if (windows.empty())
    raise<InvalidArgument>("compare_models: the text has {} token{}, fewer than the 2 needed to score one",
                           tokens.size(), tokens.size() == 1 ? "" : "s");
  eval::check_token_ids(tokens, windows.back().end, vocab, "compare_models");

  // Buffers sized to the longest window scored, not to ctx (same windows).
  const int64_t capacity = eval::window_capacity(windows);
  eval::WindowRunner run_ref(ref, capacity), run_cand(cand, capacity);
  double kl_sum = 0, agree_sum = 0;
  for (const EvalWindow& w : windows) {
    const auto win = tokens.subspan(size_t(w.begin), size_t(w.end - w.begin));
    const int64_t len = int64_t(win.size());
    run_ref.reset(len);
    run_cand.reset(len);
    for (int64_t off = 0; off < len; off += run_ref.rows()) {
      const int64_t m = std::min(run_ref.rows(), len - off);
      const float* lr = run_ref.step(win.subspan(size_t(off), size_t(m)));
      const float* lc = run_cand.step(win.subspan(size_t(off), size_t(m)));
      const int64_t scored = std::min(m, len - 1 - off);
      eval::check_finite_logits(lr, scored, vocab, "compare_models", "the reference model", r.windows, w, off);
      eval::check_finite_logits(lc, scored, vocab, "compare_models", "the candidate model", r.windows, w, off);
      double nr = 0, nc = 0, kl = 0, ag = 0;
#pragma omp parallel for num_threads(threads) reduction(+ : nr, nc, kl, ag) schedule(static)
      for (int64_t i = 0; i < scored; ++i) {
        const RowStats s = compare_row(lr + i * vocab, lc + i * vocab, vocab, win[size_t(off + i + 1)]);
        nr += s.nll_ref;
        nc += s.nll_cand;
        kl += s.kl;
        ag += s.agree;
      }
      r.nll_ref += nr;
      r.nll_cand += nc;
      kl_sum += kl;
      agree_sum += ag;
      r.scored_tokens += scored;
    }
    ++r.windows;
    if (progress) progress(r.windows, int64_t(windows.size()));
  }
  const double n = double(r.scored_tokens);
  r.ppl_ref = std::exp(r.nll_ref / n);
  r.ppl_cand = std::exp(r.nll_cand / n);
  r.mean_kl = kl_sum / n;
  r.top1_agreement = agree_sum / n;
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return r;
}

}  // namespace kq
