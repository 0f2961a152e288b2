// Token sampling: greedy, temperature, top-k, top-p (nucleus).
#include <algorithm>
#include <cmath>
#include <vector>

#include "kernels/cpu/ops_softmax.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"

namespace kq {

Sampler::Sampler(const SamplingParams& params) : params_(params), rng_(params.seed) {
  if (!std::isfinite(params.temperature) || params.temperature < 0)
    raise<InvalidArgument>("SamplingParams::temperature must be a finite number >= 0 (0 = greedy), got {}",
                           params.temperature);
  if (params.top_k < 0)
    raise<InvalidArgument>("SamplingParams::top_k must be >= 0 (0 = no limit), got {}", params.top_k);
  if (!(params.top_p > 0.0f && params.top_p <= 1.0f))
    raise<InvalidArgument>("SamplingParams::top_p must be in (0, 1], got {}", params.top_p);
}

void apply_repetition_penalty(std::span<float> logits, std::span<const int32_t> tokens, float penalty) {
  if (!std::isfinite(penalty) || penalty <= 0.0f)
    raise<InvalidArgument>("repetition penalty must be a finite number > 0 (1 = off), got {}", penalty);
  if (penalty == 1.0f) return;
  std::vector<int32_t> ids(tokens.begin(), tokens.end());
  std::sort(ids.begin(), ids.end());
  ids.erase(std::unique(ids.begin(), ids.end()), ids.end());
  for (const int32_t id : ids) {
    if (id < 0 || size_t(id) >= logits.size())
      raise<InvalidArgument>("apply_repetition_penalty: token id {} is outside the {} logits", id, logits.size());
    float& v = logits[size_t(id)];
    v = v < 0.0f ? v * penalty : v / penalty;
  }
}

int32_t Sampler::sample(std::span<const float> logits) {
  const int64_t n = int64_t(logits.size());
  if (n == 0) raise<InvalidArgument>("Sampler::sample: empty logits");
  // -inf is a masked token (probability 0); NaN or +inf means the model overflowed.
  bool any = false;
  for (int64_t i = 0; i < n; ++i) {
    const float v = logits[size_t(i)];
    if (std::isnan(v) || v == INFINITY)
      raise<Error>("Sampler::sample: the model produced a non-finite logit (token {}: {}): its weights or activations "
                   "overflow (damaged or out-of-range weights?)",
                   i, v);
    any = any || v != -INFINITY;
  }
  if (!any) raise<InvalidArgument>("Sampler::sample: every one of the {} logits is -inf (every token masked)", n);
  if (params_.temperature == 0.0f || params_.top_k == 1) return int32_t(cpu::argmax(logits.data(), n));

  // Candidates sorted by logit, descending (only the top k when top_k > 0).
  candidates_.resize(size_t(n));
  for (int64_t i = 0; i < n; ++i) candidates_[size_t(i)] = {logits[size_t(i)], int32_t(i)};
  auto by_logit = [](const auto& a, const auto& b) {
    return a.first > b.first || (a.first == b.first && a.second < b.second);
  };
  const size_t k = params_.top_k > 0 ? std::min<size_t>(size_t(params_.top_k), size_t(n)) : size_t(n);
  std::partial_sort(candidates_.begin(), candidates_.begin() + std::ptrdiff_t(k), candidates_.end(),
                    by_logit);
  candidates_.resize(k);

  // Softmax of logits / temperature over the candidates.
  const double inv_t = 1.0 / double(params_.temperature);
  const double top = double(candidates_.front().first);
  double sum = 0.0;
  for (auto& c : candidates_) sum += (c.first = float(std::exp((double(c.first) - top) * inv_t)));
  // Nucleus: the shortest prefix whose probability reaches top_p.
  size_t keep = candidates_.size();
  if (params_.top_p < 1.0f) {
    double cum = 0.0;
    for (size_t i = 0; i < candidates_.size(); ++i) {
      cum += double(candidates_[i].first) / sum;
      if (cum >= double(params_.top_p)) {
        keep = i + 1;
        break;
      }
    }
  }
  double mass = 0.0;
  for (size_t i = 0; i < keep; ++i) mass += double(candidates_[i].first);
  double u = std::uniform_real_distribution<double>(0.0, mass)(rng_);
  for (size_t i = 0; i < keep; ++i) {
    u -= double(candidates_[i].first);
    if (u < 0.0) return candidates_[i].second;
  }
  return candidates_[keep - 1].second;
}

}  // namespace kq
