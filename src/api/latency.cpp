// Decode and prefill latency, measured for several models in one interleaved run.
#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <memory>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "eval/window_runner.hpp"
#include "kernels/cpu/ops_softmax.hpp"
#include "kq/bench.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/warning.hpp"

namespace kq {
namespace {

using Clock = std::chrono::steady_clock;

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  const size_t n = v.size();
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

int32_t argmax(const std::vector<float>& logits) {
  return int32_t(cpu::argmax(logits.data(), int64_t(logits.size())));
}

/// One run's times, milliseconds.
struct RunTimes {
  double prefill_ms = 0;  ///< the prompt's forward
  double decode_ms = 0;   ///< all decode_tokens steps, each picking its token (argmax) and running its forward
};

// One run: prefill the prompt, then decode greedily.
RunTimes run_once(Model& m, KVCache& cache, std::span<const int32_t> prompt, int64_t decode_tokens,
                  std::vector<float>& logits) {
  cache.reset();
  RunTimes t;
  const auto t0 = Clock::now();
  m.forward(prompt, cache, logits.data(), /*all_logits=*/false);
  const auto t1 = Clock::now();
  for (int64_t i = 0; i < decode_tokens; ++i) {
    const int32_t next = argmax(logits);
    m.forward(std::span<const int32_t>(&next, 1), cache, logits.data(), false);
  }
  const auto t2 = Clock::now();
  t.prefill_ms = std::chrono::duration<double, std::milli>(t1 - t0).count();
  t.decode_ms = std::chrono::duration<double, std::milli>(t2 - t1).count();
  return t;
}

}  // namespace

double relative_spread(std::span<const double> run_values) {
  // A run that measured nothing sensible (NaN, inf, negative) makes the set untrustworthy, not stable.
  for (const double v : run_values)
    if (!(v >= 0 && std::isfinite(v))) return INFINITY;
  if (run_values.size() < 2) return 0.0;
  const double mid = median(std::vector<double>(run_values.begin(), run_values.end()));
  if (!(mid > 0)) return 0.0;
  const auto [lo, hi] = std::minmax_element(run_values.begin(), run_values.end());
  return (*hi - *lo) / mid;
}

bool latency_is_unstable(std::span<const double> run_values) {
  return relative_spread(run_values) > kUnstableLatencySpread;
}

LatencyResult summarize_latency_runs(std::span<const double> prefill_ms, std::span<const double> decode_ms,
                                     int64_t prompt_tokens, int64_t decode_tokens) {
  if (prefill_ms.empty() || prefill_ms.size() != decode_ms.size())
    raise<InvalidArgument>(
        "summarize_latency_runs: give one prefill and one decode time per run (got {} prefill and {} decode times)",
        prefill_ms.size(), decode_ms.size());
  if (prompt_tokens < 1 || decode_tokens < 1)
    raise<InvalidArgument>("summarize_latency_runs: prompt_tokens and decode_tokens must be positive (got {}, {})",
                           prompt_tokens, decode_tokens);
  for (size_t i = 0; i < decode_ms.size(); ++i)
    for (const auto& [what, ms] : {std::pair{"prefill", prefill_ms[i]}, std::pair{"decode", decode_ms[i]}})
      if (!(ms >= 0 && std::isfinite(ms)))
        raise<InvalidArgument>("summarize_latency_runs: run {}'s {} time is {} ms, not a finite time >= 0", i, what,
                               ms);
  LatencyResult lr;
  lr.prompt_tokens = prompt_tokens;
  lr.decode_tokens = decode_tokens;
  lr.runs = int(decode_ms.size());
  for (const double ms : decode_ms) lr.decode_ms_per_token_runs.push_back(ms / double(decode_tokens));
  lr.prefill_ms_runs.assign(prefill_ms.begin(), prefill_ms.end());
  // The protocol's "median of several runs": the median of the runs' own figures, the values the spread is of.
  lr.decode_ms_per_token = median(lr.decode_ms_per_token_runs);
  lr.decode_tokens_per_s = lr.decode_ms_per_token > 0 ? 1000.0 / lr.decode_ms_per_token : 0;
  lr.prefill_ms = median(lr.prefill_ms_runs);
  lr.prefill_tokens_per_s = lr.prefill_ms > 0 ? double(prompt_tokens) * 1000.0 / lr.prefill_ms : 0;
  lr.decode_spread = relative_spread(lr.decode_ms_per_token_runs);
  lr.prefill_spread = relative_spread(lr.prefill_ms_runs);
  return lr;
}

namespace {
/// A spread (a fraction) as a per cent with as few decimals (0 to 4) as make the
/// printed value compare with the kUnstableLatencySpread threshold as the value does:
/// 0.2026 is "20.3", not "20" (which would read as not above 20 %); 0.4 is "40".
std::string spread_pct_text(double spread) {
  const double pct = spread * 100, limit = kUnstableLatencySpread * 100;
  std::string text;
  for (int decimals = 0; decimals <= 4; ++decimals) {
    text = fmt::format("{:.{}f}", pct, decimals);
    if ((std::stod(text) > limit) == (pct > limit)) break;
  }
  return text;
}
}  // namespace

std::string latency_stability_warning(const BenchResult& r) {
  const LatencyResult &a = r.latency_before, &b = r.latency_after;
  const int runs = std::max(a.runs, b.runs);
  // One clause per measure whose runs disagree: decode (the speedup), prefill (its tokens/s).
  std::vector<std::string> unstable;
  const auto clause = [&](const char* measure, const std::vector<double>& before, const std::vector<double>& after,
                          const std::string& consequence) {
    if (!latency_is_unstable(before) && !latency_is_unstable(after)) return;
    unstable.push_back(fmt::format(
        "the {} of the {} runs spread by {} % for the baseline and {} % for {} ((max - min) / median; more than "
        "{:.0f} % is unstable), so {} unreliable",
        measure, runs, spread_pct_text(relative_spread(before)), spread_pct_text(relative_spread(after)), r.mode,
        kUnstableLatencySpread * 100, consequence));
  };
  clause("decode ms/token", a.decode_ms_per_token_runs, b.decode_ms_per_token_runs,
         fmt::format("the {:.2f}x speedup is", r.speedup));
  clause("prefill ms", a.prefill_ms_runs, b.prefill_ms_runs, "the prefill tokens/s are");
  if (unstable.empty()) return {};
  return fmt::format(
      "mode {}: unstable latency: {}; the machine was busy: rerun when it is idle, or with more "
      "LatencyOptions::runs",
      r.mode, fmt::join(unstable, "; and "));
}

BaselineLatencyDrift baseline_latency_drift(std::span<const BenchResult> results) {
  BaselineLatencyDrift d;
  std::vector<double> decode, prefill;
  for (const BenchResult& r : results)
    if (r.latency_before.runs > 0) {
      decode.push_back(r.latency_before.decode_ms_per_token);
      prefill.push_back(r.latency_before.prefill_ms);
    }
  d.modes = decode.size();
  d.decode_spread = relative_spread(decode);
  d.prefill_spread = relative_spread(prefill);
  return d;
}

std::string baseline_latency_drift_warning(std::span<const BenchResult> results) {
  const BaselineLatencyDrift d = baseline_latency_drift(results);
  if (!d.unstable()) return {};
  // The modes beside which the baseline was fastest and slowest, by a measure of latency_before.
  const auto range = [&](auto value) {
    const BenchResult *lo = nullptr, *hi = nullptr;
    for (const BenchResult& r : results) {
      if (r.latency_before.runs <= 0) continue;
      if (!lo || value(r) < value(*lo)) lo = &r;
      if (!hi || value(r) > value(*hi)) hi = &r;
    }
    return std::pair{lo, hi};
  };
  const auto [dlo, dhi] = range([](const BenchResult& r) { return r.latency_before.decode_ms_per_token; });
  const auto [plo, phi] = range([](const BenchResult& r) { return r.latency_before.prefill_tokens_per_s; });
  return fmt::format(
      "the baseline's latency changed between the modes of this run: its median decode went from {:.3f} ms/token "
      "(measured with mode {}) to {:.3f} (with {}), a spread of {} %, and its prefill from {:.0f} tokens/s (with "
      "{}) to {:.0f} (with {}), a spread of {} % ((max - min) / median over the {} modes; more than {:.0f} % is "
      "unstable). Each speedup is against the baseline timed beside that mode, but the modes were timed under "
      "different machine load, so their speedups and ms/token do not rank them; rerun when the machine is idle, "
      "or with more LatencyOptions::runs",
      dlo->latency_before.decode_ms_per_token, dlo->mode, dhi->latency_before.decode_ms_per_token, dhi->mode,
      spread_pct_text(d.decode_spread), plo->latency_before.prefill_tokens_per_s, plo->mode,
      phi->latency_before.prefill_tokens_per_s, phi->mode, spread_pct_text(d.prefill_spread), d.modes,
      kUnstableLatencySpread * 100);
}

namespace {
/// "= 160 tokens " for a sum that fits int64, "" for one that overflows.
std::string sum_text(int64_t a, int64_t b) {
  int64_t sum = 0;
  return __builtin_add_overflow(a, b, &sum) ? std::string() : fmt::format("= {} tokens ", sum);
}
}  // namespace

LatencyOptions fit_latency_options(const LatencyOptions& o, int64_t max_positions) {
  if (o.prompt_tokens < 1 || o.decode_tokens < 1 || o.runs < 1)
    raise<InvalidArgument>(
        "latency: LatencyOptions::prompt_tokens, LatencyOptions::decode_tokens and LatencyOptions::runs must be "
        "positive (got {}, {}, {})",
        o.prompt_tokens, o.decode_tokens, o.runs);
  const std::string limit =
      fmt::format("the model's context of {} position{}", max_positions, max_positions == 1 ? "" : "s");
  if (max_positions < 2)
    raise<InvalidArgument>("latency: {} leaves no room for a prompt and a decoded token", limit);
  LatencyOptions r = o;
  if (r.prompt_tokens <= max_positions - r.decode_tokens) return r;  // (no overflow: both are positive)
  if (!o.fit_prompt_tokens && !o.fit_decode_tokens)
    raise<InvalidArgument>(
        "LatencyOptions::prompt_tokens {} + LatencyOptions::decode_tokens {} {}do not fit {}; give at most {} in all",
        o.prompt_tokens, o.decode_tokens, sum_text(o.prompt_tokens, o.decode_tokens), limit, max_positions);
  if (!o.fit_prompt_tokens && o.prompt_tokens >= max_positions)
    raise<InvalidArgument>(
        "LatencyOptions::prompt_tokens {} does not fit {} with at least one decoded token; give at most {}",
        o.prompt_tokens, limit, max_positions - 1);
  if (!o.fit_decode_tokens && o.decode_tokens >= max_positions)
    raise<InvalidArgument>(
        "LatencyOptions::decode_tokens {} does not fit {} with at least one prompt token; give at most {}",
        o.decode_tokens, limit, max_positions - 1);
  if (o.fit_decode_tokens) {  // decode gives way first when both may (the prompt is what prefill measures)
    const int64_t keep_prompt =
        o.fit_prompt_tokens ? std::min(o.prompt_tokens, max_positions / 2) : o.prompt_tokens;
    r.decode_tokens = std::min(o.decode_tokens, max_positions - keep_prompt);
  }
  r.prompt_tokens = std::min(o.prompt_tokens, max_positions - r.decode_tokens);
  if (r.decode_tokens != o.decode_tokens)
    warn(fmt::format(
        "LatencyOptions::decode_tokens: using {} instead of the default {} so that the prompt and the decoded tokens "
        "fit {}",
        r.decode_tokens, o.decode_tokens, limit));
  if (r.prompt_tokens != o.prompt_tokens)
    warn(fmt::format(
        "LatencyOptions::prompt_tokens: using {} instead of the default {} so that the prompt and the decoded tokens "
        "fit {}",
        r.prompt_tokens, o.prompt_tokens, limit));
  return r;
}

std::vector<LatencyResult> measure_latency(const std::vector<Model*>& models, std::span<const int32_t> prompt,
                                           const LatencyOptions& options) {
  if (models.empty()) raise<InvalidArgument>("measure_latency: no model given");
  for (size_t i = 0; i < models.size(); ++i)
    if (!models[i]) raise<InvalidArgument>("measure_latency: models[{}] is null", i);
  if (prompt.empty()) raise<InvalidArgument>("measure_latency: empty prompt");
  // Named here (the forward would only say "forward: token id ... at index ..." of the repeated prompt).
  for (size_t i = 0; i < models.size(); ++i)
    if (const auto t = eval::first_token_outside(prompt, models[i]->config().vocab_size))
      raise<InvalidArgument>("measure_latency: prompt[{}] = {} is not a token id of models[{}] (vocabulary [0, {}))",
                             *t, prompt[*t], i, models[i]->config().vocab_size);
  // Every model for the whole measurement (warm-up and runs), as evaluate_perplexity holds its model: no other
  // thread may change one between two of its forward() calls. The same Model twice in `models` passes.
  std::vector<std::unique_ptr<Model::InUse>> in_use;
  in_use.reserve(models.size());
  for (Model* m : models) in_use.push_back(std::make_unique<Model::InUse>(*m, "measure_latency"));
  const Model* shortest = models[0];  // the smallest context
  for (Model* m : models)
    if (m->config().max_positions < shortest->config().max_positions) shortest = m;
  const LatencyOptions o = fit_latency_options(options, shortest->config().max_positions);
  const int64_t decode = o.decode_tokens, plen = o.prompt_tokens;
  std::vector<int32_t> p(static_cast<size_t>(plen));
  for (int64_t i = 0; i < plen; ++i) p[size_t(i)] = prompt[size_t(i) % prompt.size()];

  struct State {
    KVCache cache;
    std::vector<float> logits;
    std::vector<double> prefill_ms, decode_ms;  // per timed run
  };
  std::vector<State> st(models.size());
  for (size_t i = 0; i < models.size(); ++i) {
    st[i].cache = models[i]->make_cache(plen + decode);
    st[i].logits.resize(size_t(models[i]->config().vocab_size));
    (void)run_once(*models[i], st[i].cache, p, decode, st[i].logits);  // warm-up
  }
  for (int r = 0; r < o.runs; ++r)
    for (size_t i = 0; i < models.size(); ++i) {
      const RunTimes t = run_once(*models[i], st[i].cache, p, decode, st[i].logits);
      st[i].prefill_ms.push_back(t.prefill_ms);
      st[i].decode_ms.push_back(t.decode_ms);
    }

  std::vector<LatencyResult> out;
  for (const State& s : st) out.push_back(summarize_latency_runs(s.prefill_ms, s.decode_ms, plen, decode));
  return out;
}

}  // namespace kq
