// Decode and prefill latency, measured for several models in one interleaved run.
#include <algorithm>
#include <chrono>
#include <vector>

#include "kq/bench.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"

namespace kq {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int32_t argmax(const std::vector<float>& logits) {
  return int32_t(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

// One run: prefill the prompt, then decode greedily; returns the prefill time
// and appends each decoded token's time (ms).
double run_once(Model& m, KVCache& cache, std::span<const int32_t> prompt, int64_t decode_tokens,
                std::vector<float>& logits, std::vector<double>& token_ms) {
  cache.reset();
  const auto t0 = Clock::now();
  m.forward(prompt, cache, logits.data(), /*all_logits=*/false);
  const double prefill_ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  for (int64_t i = 0; i < decode_tokens; ++i) {
    const int32_t next = argmax(logits);
    const auto t = Clock::now();
    m.forward(std::span<const int32_t>(&next, 1), cache, logits.data(), false);
    token_ms.push_back(std::chrono::duration<double, std::milli>(Clock::now() - t).count());
  }
  return prefill_ms;
}

}  // namespace

std::vector<LatencyResult> measure_latency(const std::vector<Model*>& models, std::span<const int32_t> prompt,
                                           const LatencyOptions& o) {
  if (models.empty()) raise<InvalidArgument>("measure_latency: no model given");
  if (prompt.empty()) raise<InvalidArgument>("measure_latency: empty prompt");
  if (o.prompt_tokens < 1 || o.decode_tokens < 1 || o.runs < 1)
    raise<InvalidArgument>("measure_latency: prompt_tokens, decode_tokens and runs must be positive");

  int64_t max_pos = models[0]->config().max_positions;
  for (Model* m : models) max_pos = std::min(max_pos, m->config().max_positions);
  const int64_t decode = std::min(o.decode_tokens, max_pos - 1);
  const int64_t plen = std::max<int64_t>(1, std::min(o.prompt_tokens, max_pos - decode));
  std::vector<int32_t> p(static_cast<size_t>(plen));
  for (int64_t i = 0; i < plen; ++i) p[size_t(i)] = prompt[size_t(i) % prompt.size()];

  struct State {
    KVCache cache;
    std::vector<float> logits;
    std::vector<double> prefill_ms, token_ms;
  };
  std::vector<State> st(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    st[i].cache = models[i]->make_cache(plen + decode);
    st[i].logits.resize(size_t(models[i]->config().vocab_size));
    std::vector<double> warm;
    run_once(*models[i], st[i].cache, p, decode, st[i].logits, warm);  // warm-up
  }
  for (int r = 0; r < o.runs; ++r)
    for (size_t i = 0; i < models.size(); ++i)
      st[i].prefill_ms.push_back(run_once(*models[i], st[i].cache, p, decode, st[i].logits, st[i].token_ms));

  std::vector<LatencyResult> out;
  for (State& s : st) {
    LatencyResult lr;
    lr.decode_ms_per_token = median(s.token_ms);
    lr.decode_tokens_per_s = lr.decode_ms_per_token > 0 ? 1000.0 / lr.decode_ms_per_token : 0;
    lr.prefill_ms = median(s.prefill_ms);
    lr.prefill_tokens_per_s = lr.prefill_ms > 0 ? double(plen) * 1000.0 / lr.prefill_ms : 0;
    lr.prompt_tokens = plen;
    lr.decode_tokens = decode;
    lr.runs = o.runs;
    out.push_back(lr);
  }
  return out;
}

}  // namespace kq
