#pragma once
// Quality evaluation (perplexity, reference-vs-candidate comparison) and
// token sampling for generation.
#include <cstdint>
#include <functional>
#include <random>
#include <span>
#include <utility>
#include <vector>

namespace kq {

class Model;

/// Progress of a long evaluation: `done` of `total` windows finished.
using ProgressFn = std::function<void(int64_t done, int64_t total)>;

/// One evaluation window: tokens [begin, end) of the tokenized text.
struct EvalWindow {
  int64_t begin = 0;
  int64_t end = 0;
};

/// The windows of the perplexity protocol (the project's evaluation protocol,
/// summarized in README.md's "Perplexity protocol"): non-overlapping windows of `ctx` tokens starting at 0, ctx, 2·ctx, …;
/// the last may be shorter; a window of fewer than 2 tokens is dropped. Only
/// the first `max_windows` are returned when max_windows > 0.
/// Throws InvalidArgument for ctx < 2, max_windows < 0, num_tokens < 0, or more
/// than 2^31 − 1 windows to return (a huge num_tokens without max_windows: the
/// list is not allocated).
std::vector<EvalWindow> perplexity_windows(int64_t num_tokens, int ctx, int max_windows = 0);

/// Result of evaluate_perplexity.
struct PerplexityResult {
  double ppl = 0;             ///< exp(nll / scored_tokens)
  double nll = 0;             ///< total negative log-likelihood over the scored tokens, in nats
  int64_t scored_tokens = 0;  ///< Σ over windows of (window length − 1)
  int64_t windows = 0;        ///< windows evaluated
  int ctx = 0;                ///< window length used
  double seconds = 0;         ///< wall-clock time of the evaluation
  double mean_nll() const { return scored_tokens ? nll / double(scored_tokens) : 0.0; }
};

/// Perplexity of `model` on `tokens` (the whole text tokenized as one string,
/// no BOS/EOS) under the perplexity protocol: each window (perplexity_windows) is an
/// independent forward pass from position 0 (fresh KV cache) scoring tokens
/// 1 … len−1 with nll += −log softmax(logits[t−1])[token[t]]; PPL =
/// exp(total nll / scored tokens). log-softmax: max-subtracted, exponentials in
/// F32 (relative error < 2e-7), sums and logs in double.
/// ctx: window length; 0 = the model's context length (config().max_positions).
/// max_windows: evaluate only the first N windows (0 = all).
/// progress: called after each window (may be empty), on the calling thread,
/// with the model marked in use: it must not change `model` itself.
/// The model is marked in use (Model::InUse, named "evaluate_perplexity") for
/// the whole evaluation, not only during each forward(): a call from another
/// thread that runs or changes `model` before the last window is scored
/// (forward(), quantize_model, set_context, its own evaluate_perplexity, ...)
/// throws InvalidArgument, and the perplexity stays that of one model.
/// Throws InvalidArgument when ctx is 1, negative or beyond the model's max
/// positions, when the tokens give no window of 2 or more tokens, or for a
/// token id outside the vocabulary in the windows scored (naming its index in
/// `tokens`), before any window runs; and when another thread's call on
/// `model` holds its mark as it starts ("evaluate_perplexity called while
/// another call on the same Model runs ..."): a Model is not thread-safe
/// (kq/model.hpp), use one Model per thread.
/// Throws Error when a logit of a scored row (any token of the vocabulary, not
/// only the target) is NaN, +inf or -inf (weights or activations that
/// overflow), naming the token and the window ("perplexity: the model produced
/// non-finite logits at token 3 of window 0 ..."); unlike Sampler::sample, no
/// -inf logit is taken as a masked token.
PerplexityResult evaluate_perplexity(Model& model, std::span<const int32_t> tokens, int ctx = 0,
                                     int max_windows = 0, const ProgressFn& progress = {});

/// Result of compare_models: the two models on exactly the same windows.
struct ComparisonResult {
  double ppl_ref = 0, ppl_cand = 0;  ///< perplexities (as evaluate_perplexity)
  double nll_ref = 0, nll_cand = 0;  ///< total negative log-likelihoods, nats
  /// Mean over scored positions of KL(P_ref ‖ P_cand) = Σ_v p_ref(v)·(log p_ref(v) − log p_cand(v)),
  /// in nats, of the next-token distributions.
  double mean_kl = 0;
  /// Fraction of scored positions where both models' most likely next token (argmax) agree.
  double top1_agreement = 0;
  int64_t scored_tokens = 0;
  int64_t windows = 0;
  int ctx = 0;
  double seconds = 0;
};

/// Runs a reference model (e.g. FP32) and a candidate (e.g. quantized) on the
/// same windows of `tokens` and compares their next-token distributions; the
/// perplexity protocol is that of evaluate_perplexity. ctx 0 = the smaller of
/// the two models' context lengths.
/// Both models are marked in use ("compare_models") for the whole call, as
/// evaluate_perplexity marks its model; `ref` and `cand` may be the same Model.
/// Throws InvalidArgument as evaluate_perplexity does (another thread's call
/// on `ref` or `cand` included), and when the models' vocabulary sizes differ. Throws Error for a
/// non-finite logit of a scored row of either model, as evaluate_perplexity
/// does, naming the model ("compare_models: the candidate model produced
/// non-finite logits at token 3 of window 0 ...", or "the reference model").
ComparisonResult compare_models(Model& ref, Model& cand, std::span<const int32_t> tokens, int ctx = 0,
                                int max_windows = 0, const ProgressFn& progress = {});

/// How a Sampler picks the next token from the logits (`kq generate`'s
/// --temperature, --top-k, --top-p, --seed). The library has no generate():
/// a caller's generation loop runs Model::forward and a Sampler, and for
/// Phi-3's longrope recomputes the sequence once as Model::forward's doc
/// says (longrope_recomputes_cache, kq/config.hpp) to match transformers.
struct SamplingParams {
  /// Softmax temperature; 0 = greedy (argmax). Logits are divided by it before top-k / top-p.
  float temperature = 0.0f;
  /// Keep only the k most likely tokens (0 = no limit; 1 = greedy).
  int top_k = 0;
  /// Nucleus sampling (Holtzman et al. 2019): keep the smallest set of most
  /// likely tokens whose probability sum reaches top_p (1 = no limit).
  float top_p = 1.0f;
  /// Seed of the std::mt19937_64 generator (same seed, same logits => same tokens).
  uint64_t seed = 0;
};

/// The repetition penalty of CTRL (Keskar et al. 2019, arXiv:1909.05858) as
/// Hugging Face transformers' RepetitionPenaltyLogitsProcessor applies it:
/// for each distinct token id in `tokens` (the sequence so far: the prompt
/// and the tokens generated), its logit in `logits` (F32 [vocab], changed in
/// place) is divided by `penalty` when > 0 and multiplied by it when < 0 (0
/// and -inf stay). Each id is penalized once however often it occurs. Apply
/// it to the raw logits before Sampler::sample (transformers runs it before
/// the temperature / top-k / top-p warpers; in greedy decoding too).
/// `penalty` 1 changes nothing; > 1 discourages repeats. Throws
/// InvalidArgument for a penalty that is not a finite number > 0, or an id
/// of `tokens` outside [0, logits.size()).
void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> tokens, float penalty);

/// Draws token ids from logits with SamplingParams. Keeps its buffers between
/// calls (no allocation per token after the first). One sample() per
/// generated token, on the last row of Model::forward's logits (see there for
/// the loop that generates as transformers does, longrope included).
class Sampler {
 public:
  /// Throws InvalidArgument for temperature < 0 or non-finite, top_k < 0, or
  /// top_p outside (0, 1].
  explicit Sampler(const SamplingParams& params);
  /// The next token id for logits F32 [vocab]. A -inf logit masks its token
  /// (never sampled). Throws InvalidArgument for empty logits or every logit
  /// -inf, Error for a NaN or +inf logit (the model overflowed), naming the token.
  int32_t sample(std::span<const float> logits);
  const SamplingParams& params() const { return params_; }

 private:
  SamplingParams params_;
  std::mt19937_64 rng_;
  std::vector<std::pair<float, int32_t>> candidates_;  // (probability or logit, id)
};

}  // namespace kq
