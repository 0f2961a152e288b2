// AWQ calibration and scale search (see awq.hpp).
#include "api/awq.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <span>
#include <string_view>
#include <utility>
#include <vector>

#include "eval/window_runner.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/quantized_linear.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"
#include "quant/packed_weight.hpp"

namespace kq::awq {
namespace {

/// The fewest calibration tokens AWQ takes: position 0 alone (the attention sink, an outlier row) would decide
/// every scale.
constexpr int64_t kMinCalibrationTokens = 2;

/// Passes every call to the wrapped op and records its input rows.
class ObservedLinear : public Linear {
 public:
  ObservedLinear(std::unique_ptr<Linear> op, ActivationStats& stats, int64_t stride, int64_t max_rows)
      : op_(std::move(op)), stats_(stats), stride_(stride), max_rows_(max_rows) {
    stats_.sum_abs.assign(size_t(op_->in_features()), 0.0);
  }
  int64_t in_features() const override { return op_->in_features(); }
  int64_t out_features() const override { return op_->out_features(); }
  void forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const override {
    const int64_t K = in_features();
    for (int64_t m = 0; m < M; ++m) {
      const float* row = x + m * K;
      for (int64_t k = 0; k < K; ++k) stats_.sum_abs[size_t(k)] += std::fabs(double(row[k]));
      if (sampled(stats_.rows) && stats_.sample_rows < max_rows_) {
        stats_.samples.insert(stats_.samples.end(), row, row + K);
        ++stats_.sample_rows;
      }
      ++stats_.rows;
    }
    op_->forward(x, M, y, ctx);
  }
  size_t weight_bytes() const override { return op_->weight_bytes(); }
  std::string format() const override { return op_->format(); }
  Tensor dequantized_weight() const override { return op_->dequantized_weight(); }
  Tensor bias() const override { return op_->bias(); }
  std::unique_ptr<Linear> release() { return std::move(op_); }

 private:
  /// About one row in `stride_`, chosen by a hash of the row index rather than
  /// every stride-th row: a stride that divides the window would always pick
  /// the windows' first positions, whose activations are outliers (attention
  /// sinks) and would dominate the output-error objective.
  bool sampled(int64_t row) const {
    uint64_t z = uint64_t(row) + 0x9E3779B97F4A7C15ull;  // splitmix64 finalizer
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    z ^= z >> 31;
    return z % uint64_t(stride_) == 0;
  }

  std::unique_ptr<Linear> op_;
  ActivationStats& stats_;
  int64_t stride_, max_rows_;
};

/// Puts the observed ops back when it leaves scope.
class RestoreOps {
 public:
  void add(std::unique_ptr<Linear>* slot) { slots_.push_back(slot); }
  ~RestoreOps() {
    for (std::unique_ptr<Linear>* s : slots_)
      if (auto* o = dynamic_cast<ObservedLinear*>(s->get())) *s = o->release();
  }

 private:
  std::vector<std::unique_ptr<Linear>*> slots_;
};

/// Σ over the elements of a − b, squared (or of a alone when b is null),
/// over the elements i with keep[i] != 0.
double sq_diff(const std::vector<float>& a, const std::vector<float>* b, const std::vector<char>& keep) {
  double e = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (!keep[i]) continue;
    const double d = double(a[i]) - (b ? double((*b)[i]) : 0.0);
    e += d * d;
  }
  return e;
}

/// AWQ's weight clipping (as the reference code's auto_clip, which skips q_proj and k_proj; kq clips every layer
/// it is called for, awq.hpp says why): for every row n and
/// group g of the scaled weight ws [N, K], the clipping range ±r·absmax(n, g)
/// with r in {1, 1 − 1/20, …, 0.55} whose quantized group gives the smallest
/// output error Σ_samples (x_g · Δ_g)² on the scaled inputs x / s, computed as
/// Δ_gᵀ C_g Δ_g with the group's Gram matrix C_g = X_gᵀ X_g. Clamps ws in place.
void clip_search(Tensor& ws, const std::vector<float>& X, int64_t S, const std::vector<float>& inv_s,
                 const QuantSpec& base) {
  constexpr int kSteps = 10;  // r = 1 − i/20, i < 10 (max shrink 0.5)
  const int64_t N = ws.dim(0), K = ws.dim(1), G = base.block_size;
  const int64_t ng = (K + G - 1) / G;
  // Gram matrices of the scaled inputs per group: C[g] is [G, G] (tail zero-padded).
  std::vector<float> C(size_t(ng * G * G), 0.0f);
#pragma omp parallel for schedule(dynamic)
  for (int64_t g = 0; g < ng; ++g) {
    const int64_t k0 = g * G, len = std::min(G, K - k0);
    float* c = C.data() + g * G * G;
    for (int64_t r = 0; r < S; ++r) {
      const float* x = X.data() + r * K + k0;
      for (int64_t i = 0; i < len; ++i) {
        const float xi = x[i] * inv_s[size_t(k0 + i)];
        for (int64_t j = 0; j < len; ++j) c[i * G + j] += xi * x[j] * inv_s[size_t(k0 + j)];
      }
    }
  }
  float* w = ws.mutable_data<float>();
  std::vector<float> absmax(size_t(N * ng), 0.0f), best_err(size_t(N * ng), INFINITY), best_r(size_t(N * ng), 1.0f);
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      float& a = absmax[size_t(n * ng + k / G)];
      a = std::max(a, std::fabs(w[n * K + k]));
    }
  Tensor clamped = Tensor::empty(DType::F32, {N, K});
  for (int i = 0; i < kSteps; ++i) {
    const float r = 1.0f - float(i) / 20.0f;
    float* cw = clamped.mutable_data<float>();
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        const float m = r * absmax[size_t(n * ng + k / G)];
        cw[n * K + k] = std::clamp(w[n * K + k], -m, m);
      }
    const Tensor dq = quantize_weight(clamped, base).dequantize();
    const float* q = dq.data<float>();
#pragma omp parallel for schedule(static)
    for (int64_t n = 0; n < N; ++n) {
      std::vector<float> d(static_cast<size_t>(G)), v(static_cast<size_t>(G));
      for (int64_t g = 0; g < ng; ++g) {
        const int64_t k0 = g * G, len = std::min(G, K - k0);
        for (int64_t j = 0; j < len; ++j) d[size_t(j)] = w[n * K + k0 + j] - q[n * K + k0 + j];
        const float* c = C.data() + g * G * G;
        // v = C·d column by column (C is symmetric; no reduction in the inner
        // loop, so it vectorizes), then e = d·v.
        std::fill(v.begin(), v.end(), 0.0f);
        for (int64_t b = 0; b < len; ++b) {
          const float db = d[size_t(b)];
          const float* cb = c + b * G;
          for (int64_t a = 0; a < len; ++a) v[size_t(a)] += cb[a] * db;
        }
        double e = 0;
        for (int64_t a = 0; a < len; ++a) e += double(d[size_t(a)]) * double(v[size_t(a)]);
        const size_t idx = size_t(n * ng + g);
        if (e < best_err[idx]) {
          best_err[idx] = float(e);
          best_r[idx] = r;
        }
      }
    }
  }
  for (int64_t n = 0; n < N; ++n)
    for (int64_t k = 0; k < K; ++k) {
      const float m = best_r[size_t(n * ng + k / G)] * absmax[size_t(n * ng + k / G)];
      w[n * K + k] = std::clamp(w[n * K + k], -m, m);
    }
}

/// CalibrationOptions::grid in [1, kMaxAwqGrid]: a larger grid never finishes on a real model.
void check_grid(int grid) {
  if (grid < 1 || grid > kMaxAwqGrid)
    raise<InvalidArgument>(
        "CalibrationOptions::grid (AWQ's points of α) must be in [1, {}], got {} (the AWQ reference code uses 20)",
        kMaxAwqGrid, grid);
}

}  // namespace

std::map<std::string, ActivationStats> collect_activation_stats(Model& model, std::span<const int32_t> tokens,
                                                                const CalibrationOptions& options,
                                                                const std::function<bool(const std::string&)>& want) {
  if (model.context().device != Device::CPU)
    raise<InvalidArgument>(
        "AWQ calibration runs on the CPU; load the model with ExecContext::device = Device::CPU (it moves after)");
  if (tokens.empty())
    raise<InvalidArgument>("AWQ needs calibration text (QuantizeOptions::calibration.tokens)");
  // Named here, before any window runs (the forward would only say "forward: token id ... at index ...").
  const int64_t vocab = model.config().vocab_size;
  if (const auto i = eval::first_token_outside(tokens, vocab))
    raise<InvalidArgument>(
        "QuantizeOptions::calibration.tokens[{}] = {} is not a token id of the model (vocabulary [0, {}))", *i,
        tokens[*i], vocab);
  check_grid(options.grid);
  const int64_t max_pos = model.config().max_positions;
  if (options.window < 0)
    raise<InvalidArgument>("calibration window {} must be >= 0 (0 = min(512, the model's context))", options.window);
  const int64_t window = options.window > 0 ? options.window : std::min<int64_t>(512, max_pos);
  if (window < 2 || window > max_pos)
    raise<InvalidArgument>("calibration window {} must be in [2, {}] (the model's context)", window, max_pos);
  if (options.search_rows < 1 || options.max_tokens < 1)
    raise<InvalidArgument>("calibration search_rows and max_tokens must be >= 1 (got {} and {})",
                           options.search_rows, options.max_tokens);
  const int64_t total = std::min<int64_t>(int64_t(tokens.size()), options.max_tokens);
  if (total < kMinCalibrationTokens)
    raise<InvalidArgument>("AWQ needs at least {} calibration tokens ({}): the first position alone is no statistic "
                           "of the model's activations",
                           kMinCalibrationTokens,
                           int64_t(tokens.size()) < kMinCalibrationTokens
                               ? "QuantizeOptions::calibration.tokens holds 1"
                               : "QuantizeOptions::calibration.max_tokens is 1");
  const int64_t stride = std::max<int64_t>(1, total / options.search_rows);

  std::map<std::string, ActivationStats> stats;
  bool lm_head_observed = false;
  RestoreOps restore;
  for (const LinearSlot& slot : model.linear_layers()) {
    if (!want(slot.name)) continue;
    ActivationStats& st = stats[slot.name];
    *slot.op = std::make_unique<ObservedLinear>(std::move(*slot.op), st, stride, options.search_rows);
    restore.add(slot.op);
    lm_head_observed = lm_head_observed || slot.is_lm_head;
  }
  if (stats.empty()) return stats;
  KVCache cache = model.make_cache(window);
  std::vector<float> logits;
  for (int64_t b = 0; b < total; b += window) {
    const int64_t n = std::min(window, total - b);
    if (n < 2 && b > 0) break;  // as the perplexity protocol, a 1-token tail adds nothing
    cache.reset();
    if (lm_head_observed) logits.resize(size_t(n * model.config().vocab_size));
    model.forward(tokens.subspan(size_t(b), size_t(n)), cache, lm_head_observed ? logits.data() : nullptr, true);
  }
  // Non-finite inputs leave no statistic to choose scales from (every error NaN, every layer plain
  // round-to-nearest): refused, naming the first layer in the forward order whose inputs were not finite.
  for (const LinearSlot& slot : model.linear_layers()) {
    const auto st = stats.find(slot.name);
    if (st == stats.end()) continue;
    const std::vector<double>& sum = st->second.sum_abs;
    if (const auto k = std::find_if(sum.begin(), sum.end(), [](double v) { return !std::isfinite(v); });
        k != sum.end())
      raise<Error>("AWQ calibration: the model's forward pass over the calibration text produced non-finite values "
                   "(inf or NaN) in the inputs of layer '{}' (input feature {}), so AWQ has no activation statistics "
                   "to choose scales from; the model's weights or config give non-finite activations on this text "
                   "(a mode without calibration, such as int8 or nf4, does not run the model)",
                   slot.name, k - sum.begin());
  }
  return stats;
}

std::vector<int32_t> read_calibration_tokens(const std::filesystem::path& file, const Tokenizer& tok, int64_t window,
                                             std::string_view source) {
  const std::string text = io::read_utf8_text_file(file, uint64_t(1) << 31);
  if (std::all_of(text.begin(), text.end(), [](unsigned char c) { return std::isspace(c) != 0; }))
    raise<InvalidArgument>("{} '{}': the file {}; AWQ needs calibration text (a few thousand tokens of "
                           "ordinary text in the model's language)",
                           source, file.string(), text.empty() ? "is empty" : "holds only whitespace");
  std::vector<int32_t> tokens = tok.encode(text);
  const int64_t n = int64_t(tokens.size());
  // Too few for collect_activation_stats: one error naming the file, not a few-tokens warning and then an error
  // naming the tokens.
  if (n < kMinCalibrationTokens)
    raise<InvalidArgument>("{} '{}': the calibration text is {} token{} long; AWQ needs at least {} (the first "
                           "position alone is no statistic of the model's activations) and a few thousand tokens of "
                           "ordinary text in the model's language for reliable scales",
                           source, file.string(), n, n == 1 ? "" : "s", kMinCalibrationTokens);
  // Fewer tokens than one window or than 128 give unreliable scales.
  constexpr int64_t kFewTokens = 128;
  if (n < std::max(window, kFewTokens))
    warn(fmt::format(
        "{} '{}': only {} token{} of calibration text, {} (AWQ chooses its scales from these "
        "activations alone; give a few thousand tokens for reliable scales)",
        source, file.string(), n, n == 1 ? "" : "s",
        n < window ? fmt::format("less than one calibration window of {} tokens", window)
                   : fmt::format("fewer than {}", kFewTokens)));
  return tokens;
}

std::vector<ScaleSearch> search_group_scales(std::span<const Tensor> weights, std::span<const Tensor> biases,
                                             const ActivationStats& stats, const QuantSpec& spec, int grid, bool clip,
                                             bool scale) {
  if (!spec.awq) raise<InvalidArgument>("awq::search_scales: {} is not an AWQ mode", spec.name());
  check_grid(grid);
  if (weights.empty() || biases.size() != weights.size())
    raise<InvalidArgument>("awq::search_group_scales: {} weights and {} biases", weights.size(), biases.size());
  // The group's weights as one [N, K] matrix (rows of each member in order) and its bias.
  std::vector<Tensor> w32;
  int64_t N = 0;
  const int64_t K = weights[0].dim(1);
  for (const Tensor& t : weights) {
    w32.push_back(t.dtype() == DType::F32 ? t : t.to_f32());
    if (w32.back().dim(1) != K)
      raise<InvalidArgument>("awq::search_group_scales: members with K = {} and {}", K, w32.back().dim(1));
    N += w32.back().dim(0);
  }
  if (int64_t(stats.sum_abs.size()) != K || stats.sample_rows < 1 || stats.rows < 1)
    raise<InvalidArgument>("awq::search_scales: statistics for {} inputs with {} sampled rows; the weight has K = {}",
                           stats.sum_abs.size(), stats.sample_rows, K);
  const bool any_bias = std::any_of(biases.begin(), biases.end(), [](const Tensor& b) { return b.defined(); });
  Tensor w = Tensor::empty(DType::F32, {N, K}), bias;
  if (any_bias) bias = Tensor::empty(DType::F32, {N});
  {
    int64_t row = 0;
    for (size_t i = 0; i < w32.size(); ++i) {
      const int64_t n = w32[i].dim(0);
      std::copy_n(w32[i].data<float>(), n * K, w.mutable_data<float>() + row * K);
      if (any_bias) {
        float* bp = bias.mutable_data<float>() + row;
        if (biases[i].defined()) {
          const Tensor b = biases[i].dtype() == DType::F32 ? biases[i] : biases[i].to_f32();
          std::copy_n(b.data<float>(), n, bp);
        } else {
          std::fill_n(bp, n, 0.0f);
        }
      }
      row += n;
    }
  }
  const QuantSpec base = awq_base_spec(spec);
  const int64_t S = stats.sample_rows;
  const float* wp = w.data<float>();

  // X and the reference output X·Wᵀ [S, N].
  const std::vector<float>& X = stats.samples;
  std::vector<float> ref(size_t(S * N)), out(size_t(S * N));
  const ExecContext cpu{};
  make_linear_f32(w.clone())->forward(X.data(), S, ref.data(), cpu);
  // Reference outputs that overflow (a weight near FLT_MAX times an input
  // above 1) say nothing about a candidate's error: they are left out, so the
  // error stays finite and the candidates remain comparable.
  std::vector<char> ref_ok(ref.size());
  for (size_t i = 0; i < ref.size(); ++i) ref_ok[i] = std::isfinite(ref[i]) ? 1 : 0;
  const double ref_norm = std::max(sq_diff(ref, nullptr, ref_ok), 1e-30);
  // No finite reference at all (the sampled inputs themselves overflowed): no
  // error is known, every candidate's is NaN and the search falls back to RTN.
  const bool any_ref = std::find(ref_ok.begin(), ref_ok.end(), char(1)) != ref_ok.end();

  // Relative output error of a candidate op on the sampled rows, through the
  // op's own forward (exactly what inference computes), its bias removed.
  auto error_of = [&](const Linear& op) {
    op.forward(X.data(), S, out.data(), cpu);
    if (bias.defined())
      for (int64_t r = 0; r < S; ++r)
        for (int64_t n = 0; n < N; ++n) out[size_t(r * N + n)] -= bias.data<float>()[n];
    return any_ref ? sq_diff(out, &ref, ref_ok) / ref_norm : NAN;
  };

  std::vector<double> mean(static_cast<size_t>(K));
  for (int64_t k = 0; k < K; ++k)
    mean[size_t(k)] = std::max(stats.sum_abs[size_t(k)] / double(stats.rows), 1e-4);

  // W·diag(s) into `scaled`; false when an element is not finite (a weight
  // near FLT_MAX times s_k > 1 overflows).
  Tensor scaled = Tensor::empty(DType::F32, {N, K});
  auto scale_weight = [&](const float* sp) {
    float* ws = scaled.mutable_data<float>();
    bool finite = true;
    for (int64_t n = 0; n < N; ++n)
      for (int64_t k = 0; k < K; ++k) {
        ws[n * K + k] = wp[n * K + k] * sp[k];
        finite = finite && std::isfinite(ws[n * K + k]);
      }
    return finite;
  };

  // AutoAWQ's "duo scaling" (casper-hansen/AutoAWQ, quantizer.py): the weight's
  // side too, w_k = the mean over rows of |W[n][k]| / max |W[n][·]| of k's group.
  std::vector<double> wmean(static_cast<size_t>(K), 0.0);
  {
    const int64_t gs = std::min<int64_t>(base.block_size > 0 ? base.block_size : K, K);
    for (int64_t n = 0; n < N; ++n)
      for (int64_t g0 = 0; g0 < K; g0 += gs) {
        const int64_t g1 = std::min(K, g0 + gs);
        double amax = 0;
        for (int64_t k = g0; k < g1; ++k) amax = std::max(amax, double(std::fabs(wp[n * K + k])));
        if (!std::isfinite(amax)) continue;  // such a row is skipped (its candidates are not finite anyway)
        for (int64_t k = g0; k < g1; ++k) wmean[size_t(k)] += std::fabs(wp[n * K + k]) / (amax + 1e-6);
      }
    for (double& v : wmean) v /= double(N);
  }

  // Candidates whose scaled weight or output error is not finite are skipped;
  // α = 0 (s = 1, plain round-to-nearest) is always a candidate, so the result
  // is never worse than RTN, and is RTN when no error is finite.
  ScaleSearch best;
  best.error = INFINITY;
  best.rtn_error = INFINITY;
  Tensor best_s, rtn_s;
  // Without `scale`, the α = 0 candidate alone (s = 1).
  const int64_t candidates = scale ? 2 * int64_t(grid) : 1;  // (2 * grid in int wrapped negative for grid >= 2^30)
  for (int64_t i = 0; i < candidates; ++i) {
    // i < grid: s_k = mean|x_k|^α (the paper); then s_k = mean|x_k|^α / (w_k^(1−α) + 1e-4) (duo scaling).
    const bool duo = i >= grid;
    const double alpha = double(i % grid) / double(grid);
    Tensor s = Tensor::empty(DType::F32, {K});
    float* sp = s.mutable_data<float>();
    double smax = 0, smin = INFINITY;
    for (int64_t k = 0; k < K; ++k) {
      double v = std::pow(mean[size_t(k)], alpha);
      if (duo) v = std::max(v / (std::pow(wmean[size_t(k)], 1.0 - alpha) + 1e-4), 1e-4);
      smax = std::max(smax, v);
      smin = std::min(smin, v);
      sp[k] = float(v);
    }
    const double norm = std::sqrt(smax * smin);
    for (int64_t k = 0; k < K; ++k) sp[k] = float(double(sp[k]) / norm);
    // At α = 0 (s = 1) a non-finite weight is the input's: quantize_weight names it.
    if (!scale_weight(sp) && i > 0) continue;
    const double err = error_of(*make_awq_linear(quantize_weight(scaled, base), bias, s));
    if (i == 0) {
      best.rtn_error = err;
      rtn_s = s;
    }
    if (std::isfinite(err) && err < best.error) {
      best.error = err;
      best.alpha = float(alpha);
      best.duo = duo;
      best_s = s;
    }
  }
  if (!best_s.defined()) {  // no finite error at all: plain RTN
    best.error = best.rtn_error;
    best.alpha = 0;
    best.duo = false;
    best_s = rtn_s;
  }
  scale_weight(best_s.data<float>());
  if (clip && std::isfinite(best.error)) {
    // Clipping of the chosen scaled weight; kept only if the group's output error falls.
    std::vector<float> inv_s(static_cast<size_t>(K));
    for (int64_t k = 0; k < K; ++k) inv_s[size_t(k)] = 1.0f / best_s.data<float>()[k];
    Tensor clipped = scaled.clone();
    clip_search(clipped, X, S, inv_s, base);
    const double err = error_of(*make_awq_linear(quantize_weight(clipped, base), bias, best_s));
    if (err < best.error) {
      best.error = err;
      best.clipped = true;
      scaled = std::move(clipped);
    }
  }
  // One op per member: its rows of the chosen (clipped) W·diag(s), quantized
  // row by row exactly as the group was, and the group's s.
  std::vector<ScaleSearch> result;
  int64_t row = 0;
  for (size_t i = 0; i < w32.size(); ++i) {
    const int64_t n = w32[i].dim(0);
    Tensor part = Tensor::empty(DType::F32, {n, K});
    std::copy_n(scaled.data<float>() + row * K, n * K, part.mutable_data<float>());
    ScaleSearch r;
    r.alpha = best.alpha;
    r.duo = best.duo;
    r.rtn_error = best.rtn_error;
    r.error = best.error;
    r.clipped = best.clipped;
    r.op = make_awq_linear(quantize_weight(part, base), biases[i], best_s);
    result.push_back(std::move(r));
    row += n;
  }
  return result;
}

ScaleSearch search_scales(const Tensor& weight, const Tensor& bias, const ActivationStats& stats,
                          const QuantSpec& spec, int grid, bool clip, bool scale) {
  const Tensor w[] = {weight}, b[] = {bias};
  return std::move(search_group_scales(w, b, stats, spec, grid, clip, scale).front());
}

}  // namespace kq::awq
