// `kq bench`: quality, memory and latency of each quantization mode against the
// unquantized model, in one run (protocols: docs/EVALUATION.md of the shared data).
#include "kq/bench.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

#include "api/awq.hpp"
#include "core/out_of_memory.hpp"
#include "eval/window_runner.hpp"
#include "io/file_kind.hpp"
#include "io/utf8_text.hpp"
#include "kernels/linear.hpp"
#include "kq/adaptive.hpp"
#include "kq/error.hpp"
#include "kq/eval.hpp"
#include "kq/fp8.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"

namespace kq {
namespace {

using Clock = std::chrono::steady_clock;
double since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

size_t proc_status_kb(const char* key) {
  std::ifstream f("/proc/self/status");
  std::string line;
  const std::string k = fmt::format("{}:", key);
  while (std::getline(f, line))
    if (line.starts_with(k)) return size_t(std::stoull(line.substr(k.size()))) * 1024;
  return 0;
}

/// Whether the regular files `a` and `b` hold the same bytes (the sizes first,
/// then the contents, 1 MiB at a time); false when either cannot be read.
bool same_content(const std::filesystem::path& a, const std::filesystem::path& b) {
  std::error_code ea, eb;
  const uintmax_t size = std::filesystem::file_size(a, ea);
  if (ea || size != std::filesystem::file_size(b, eb) || eb) return false;
  std::ifstream fa(a, std::ios::binary), fb(b, std::ios::binary);
  if (!fa || !fb) return false;
  std::vector<char> ba(1 << 20), bb(1 << 20);
  for (uintmax_t left = size; left > 0;) {
    const auto n = std::streamsize(std::min<uintmax_t>(left, ba.size()));
    if (!fa.read(ba.data(), n) || !fb.read(bb.data(), n)) return false;
    if (!std::equal(ba.begin(), ba.begin() + n, bb.begin())) return false;
    left -= uintmax_t(n);
  }
  return true;
}

/// A fixed mode's quantized layers as the checkpoint stored them (EVALUATION.md's "the unquantized model in its
/// original dtype").
struct OnDiskLinearBytes {
  size_t bytes = 0;    ///< Σ N·K · size of LinearSlot::disk_dtype + the F32 bias, as adaptive plans count them
  std::string dtypes;  ///< "f32", "bf16", "f16", or several joined with '+' in model order ("bf16+f32")
};

/// OnDiskLinearBytes of the layers `qr` (quantize_model's report on `base`'s checkpoint) quantized: each
/// layer's on-disk dtype from `base`'s slot of the same name (F32 where there is none), its bias the
/// LayerQuantization::bytes_before (FP32 as held) beyond the FP32 matrix.
OnDiskLinearBytes quantized_layers_on_disk(Model& base, const QuantizeReport& qr) {
  std::vector<LinearSlot> slots = base.linear_layers();
  OnDiskLinearBytes r;
  std::vector<std::string> names;
  for (const LayerQuantization& l : qr.layers) {
    if (!l.quantized) continue;
    const auto slot = std::find_if(slots.begin(), slots.end(), [&](const LinearSlot& s) { return s.name == l.name; });
    const DType d = slot == slots.end() ? DType::F32 : slot->disk_dtype;
    const size_t nk = size_t(l.out_features) * size_t(l.in_features), f32_matrix = nk * dtype_size(DType::F32);
    r.bytes += nk * dtype_size(d) + (l.bytes_before > f32_matrix ? l.bytes_before - f32_matrix : 0);
    const std::string name = d == DType::BF16 ? "bf16" : d == DType::F16 ? "f16" : "f32";
    if (std::find(names.begin(), names.end(), name) == names.end()) names.push_back(name);
  }
  r.dtypes = fmt::format("{}", fmt::join(names, "+"));
  return r;
}

}  // namespace

size_t current_rss_bytes() { return proc_status_kb("VmRSS"); }
size_t peak_rss_bytes() { return proc_status_kb("VmHWM"); }

std::string few_scored_tokens_warning(const BenchReport& r) {
  if (r.results.empty() || r.scored_tokens >= kMinScoredTokensForVerdict) return {};
  return fmt::format(
      "the perplexities cover only {} scored token{}: PASS/FAIL against per-cent thresholds is not "
      "reliable on fewer than {} (give more BenchOptions::samples, a larger BenchOptions::ctx or a longer "
      "BenchOptions::text)",
      r.scored_tokens, r.scored_tokens == 1 ? "" : "s", kMinScoredTokensForVerdict);
}

std::string samples_beyond_text_warning(int samples, int64_t windows, int64_t text_tokens, int ctx) {
  if (samples <= windows) return {};
  const auto count_noun = [](int64_t n, const char* noun) {
    return fmt::format("{} {}{}", n, noun, n == 1 ? "" : "s");
  };
  const int64_t full = ctx > 0 ? std::min<int64_t>(windows, text_tokens / ctx) : 0;
  const int64_t last = windows > full ? text_tokens - full * ctx : 0;  // a shorter last window
  std::string sizes;
  if (windows == 1)
    sizes = fmt::format("of {}", count_noun(full == 1 ? ctx : last, "token"));
  else if (last == 0)
    sizes = fmt::format("each of {} tokens", ctx);
  else
    sizes = fmt::format("{} of {} tokens and 1 of {}", full, ctx, last);
  return fmt::format(
      "BenchOptions::samples {}: the text ({}) has only {}, {} (at most {} per window); {} (as with "
      "BenchOptions::samples {})",
      samples, count_noun(text_tokens, "token"), count_noun(windows, "window"), sizes, ctx,
      windows == 1 ? "it was evaluated" : fmt::format("all {} were evaluated", windows), windows);
}

std::string implausible_comparison_warning(const BenchResult& r) {
  std::vector<std::string> why;
  if (r.ppl_delta_pct < -kImplausiblePplDropPct)  // (false for NaN)
    why.push_back(fmt::format("a quantized model is not more than {:.0f} % better than the model it approximates",
                              kImplausiblePplDropPct));
  if (r.pass && r.top1_agreement < kImplausibleTop1Agreement)
    why.push_back(fmt::format("a mode within its threshold ({:.0f} %) agrees with the baseline on most top-1 tokens, "
                              "not under {:.0f} %",
                              r.threshold_pct, kImplausibleTop1Agreement * 100));
  if (why.empty()) return {};
  return fmt::format("mode {}: implausible comparison with the baseline: perplexity {:.2f} -> {:.2f} ({:+.2f} %), "
                     "top-1 agreement {:.1f} %, KL {:.4g} nats, but {}. The baseline's numbers are likely wrong (check "
                     "the unquantized model's perplexity on this text alone); the {} verdict says nothing here",
                     r.mode, r.ppl_before, r.ppl_after, r.ppl_delta_pct, r.top1_agreement * 100, r.kl_div,
                     fmt::join(why, ", and "), r.pass ? "PASS" : "FAIL");
}

std::vector<BenchMode> parse_bench_modes(const std::vector<std::string>& modes) {
  if (modes.empty()) raise<InvalidArgument>("BenchOptions::modes: give at least one mode");
  std::vector<BenchMode> out;
  for (size_t i = 0; i < modes.size(); ++i) {
    BenchMode m;
    m.name = modes[i];
    if (is_adaptive_mode(modes[i])) {
      m.adaptive = parse_adaptive_mode(modes[i]);
      m.canonical = adaptive_mode_name(*m.adaptive);
    } else {
      m.spec = parse_quant_mode(modes[i]);
      m.canonical = m.spec->name();
    }
    for (size_t j = 0; j < i; ++j)
      if (out[j].canonical == m.canonical)
        raise<InvalidArgument>("BenchOptions::modes: '{}' is the same mode as '{}' ({}); give each mode once", modes[i],
                               modes[j], m.canonical);
    out.push_back(std::move(m));
  }
  return out;
}

BenchReport run_bench(const BenchOptions& o, const BenchProgressFn& progress, const BenchResultFn& on_result) {
  if (o.samples < 0) raise<InvalidArgument>("BenchOptions::samples must be >= 0 (0 = all windows), got {}", o.samples);
  // As Model::load checks an ExecContext, but naming the field of BenchOptions the caller set.
  if (o.context.device != Device::CPU && o.context.device != Device::CUDA)
    raise<InvalidArgument>("BenchOptions::context.device {} is not a Device (cpu or cuda)", int(o.context.device));
  if (o.context.threads < 0 || o.context.threads > kMaxThreads)
    raise<InvalidArgument>("BenchOptions::context.threads must be in [0, {}] (0 = all cores), got {}", kMaxThreads,
                           o.context.threads);
  // Parse every mode first so a typo fails before minutes of work.
  const std::vector<BenchMode> specs = parse_bench_modes(o.modes);

  BenchReport rep;
  rep.model = o.model_dir.string();
  rep.text = o.text.string();
  rep.device = device_name(o.context.device);
  if (o.context.device == Device::CUDA) rep.device_name = get_fp8_info().device_name;
  rep.threads = resolve_threads(o.context.threads);
  rep.samples = o.samples;

  if (std::error_code ec; !std::filesystem::exists(o.model_dir, ec)) {  // (a symbolic link loop: said, not thrown)
    const std::string why = io::why_not_regular_file(o.model_dir).value_or("not found");
    raise<InvalidArgument>("BenchOptions::model_dir: '{}' {}", o.model_dir.string(),
                           why == "not found" ? "is not a model folder (not found)" : why);
  }
  if (std::error_code ec; !std::filesystem::is_directory(o.model_dir, ec))
    raise<InvalidArgument>("BenchOptions::model_dir: '{}' is not a model folder (not a folder)", o.model_dir.string());
  if (const auto why = io::why_not_regular_file(o.text))
    raise<InvalidArgument>("BenchOptions::text: '{}' {}", o.text.string(), *why);
  const auto t_load = Clock::now();
  std::unique_ptr<Model> base;
  try {
    base = Model::load(o.model_dir, o.context);
  } catch (const std::bad_alloc& e) {  // what was being allocated (named by the loader) and why FP32
    throw OutOfMemory(out_of_memory_text(e, " (loading the baseline: the unquantized model, held in FP32, 4 bytes "
                                            "per parameter, beside which each mode's model is built)"));
  }
  rep.baseline_load_seconds = since(t_load);
  for (const LinearSlot& s : base->linear_layers())
    if ((*s.op)->format() != "f32")
      raise<InvalidArgument>("{}: the model is already quantized (layer '{}' is {}); bench needs the original model "
                             "(it quantizes it in each mode and compares with it); a quantized folder (kq's, or an "
                             "AutoAWQ / AutoGPTQ / bitsandbytes checkpoint) runs with kq eval and kq generate",
                             o.model_dir.string(), s.name, (*s.op)->format());
  // Adaptive targets this model cannot reach (from its layers' shapes) fail before any mode runs.
  for (const BenchMode& m : specs) {
    if (!m.adaptive) continue;
    AdaptiveOptions ao = *m.adaptive;
    ao.quantize_lm_head = o.quantize_lm_head;
    ao.keep_patterns = o.keep_patterns;
    AdaptiveModeParts parts;  // "adaptive" (= adaptive-r80): a target the name does not state, the default
    (void)parse_adaptive_mode(m.name, &parts);
    try {
      (void)check_adaptive_reach(*base, ao, !parts.target, "");
    } catch (const InvalidArgument& e) {
      raise<InvalidArgument>("BenchOptions::modes {}: {}", m.name, e.what());
    }
  }
  // Latency options that cannot fit fail (or defaults shrink, with a warning) before minutes of work.
  (void)eval::resolve_ctx(o.ctx, base->config().max_positions, "BenchOptions::ctx");  // one that does not fit, now
  LatencyOptions latency = o.latency;
  if (o.measure_latency) latency = fit_latency_options(o.latency, base->config().max_positions);
  const Tokenizer tok = Tokenizer::load(o.model_dir);
  rep.tokenizer = tok.source();
  tok.check_fits(base->config().vocab_size, o.model_dir.string());
  const std::vector<int32_t> tokens = tok.encode(io::read_utf8_text_file(o.text, uint64_t(1) << 31),
                                                 EncodeOptions{.allow_special = o.allow_special_tokens});
  rep.special_tokens = o.allow_special_tokens;
  rep.text_tokens = int64_t(tokens.size());
  if (tokens.size() < 2)
    raise<InvalidArgument>("BenchOptions::text '{}': the text has {} token{}, fewer than the 2 needed to score one",
                           o.text.string(), tokens.size(), tokens.size() == 1 ? "" : "s");

  // AWQ modes: the calibration text, tokenized once (it should not be the evaluation text).
  CalibrationOptions calibration;
  if (std::any_of(specs.begin(), specs.end(), [](const BenchMode& m) { return m.spec && m.spec->awq; })) {
    if (o.calibration.empty())
      raise<InvalidArgument>(
          "AWQ modes need BenchOptions::calibration: text to collect activation statistics on (not the "
          "BenchOptions::text it is evaluated on; e.g. WikiText-2 valid when reporting on test)");
    if (const auto why = io::why_not_regular_file(o.calibration))
      raise<InvalidArgument>("BenchOptions::calibration: '{}' {}", o.calibration.string(), *why);
    std::error_code ec;
    const bool same_file = std::filesystem::equivalent(o.calibration, o.text, ec);
    if (same_file || same_content(o.calibration, o.text))
      warn(fmt::format("BenchOptions::calibration '{}' is the evaluation text, BenchOptions::text '{}'{}: AWQ is "
                       "then tuned on the text it is scored on, which flatters its perplexity",
                       o.calibration.string(), o.text.string(), same_file ? "" : " (a byte-identical copy)"));
    // One window of the calibration forward pass (awq::collect_activation_stats).
    calibration.tokens =
        awq::read_calibration_tokens(o.calibration, tok, std::min<int64_t>(512, base->config().max_positions),
                                    "BenchOptions::calibration");
    rep.calibration = o.calibration.string();
  }

  for (size_t i = 0; i < specs.size(); ++i) {
    BenchResult r;
    r.mode = o.modes[i];
    r.mode_canonical = specs[i].canonical;

    const auto t0 = Clock::now();
    QuantizeReport qr;
    std::unique_ptr<Model> cand;
    std::optional<QuantSpec> threshold_spec = specs[i].spec;
    try {
      if (specs[i].adaptive) {
        // The per-layer plan is made on the host model as loaded (in its 16-bit disk dtype, as kq quantize
        // loads it: load_to_quantize), then moved like load_quantized does.
        AdaptiveOptions ao = *specs[i].adaptive;
        ao.quantize_lm_head = o.quantize_lm_head;
        ao.keep_patterns = o.keep_patterns;
        ExecContext host = o.context;
        host.device = Device::CPU;
        cand = load_to_quantize(o.model_dir, host);
        AdaptivePlan plan;
        qr = quantize_model_adaptive(*cand, ao, &plan);  // its bytes: every planned layer (the target's)
        threshold_spec = lowest_precision_spec(plan);
        // Every target in (0, 1) quantizes a layer (keeping all removes nothing); a plan that did not would
        // have no precision to judge it by.
        if (!threshold_spec)
          raise<InvalidArgument>(
              "BenchOptions::modes {}: the adaptive plan keeps every one of its {} layers unquantized ({}), "
              "which reaches no target; nothing to compare",
              r.mode, plan.layers.size(), held_dtype_names(plan));
        r.linear_before_dtype = held_dtype_names(plan);
        r.linear_kept_layers = plan.kept_layers;
        r.linear_kept_bytes = plan.kept_bytes;
        if (o.context.device != Device::CPU) cand->to_device(o.context);
      } else {
        const QuantizeOptions qo{*specs[i].spec, o.quantize_lm_head, o.keep_patterns, calibration};
        cand = load_quantized(o.model_dir, qo, o.context, &qr);
      }
    } catch (const std::bad_alloc& e) {
      throw OutOfMemory(out_of_memory_text(
          e, fmt::format(" (building mode {}'s model, beside the FP32 baseline, which stays loaded)", r.mode)));
    }
    r.load_seconds = since(t0);
    if (qr.quantized_elements == 0)
      raise<InvalidArgument>(
          "mode {}: no layer was quantized (every linear layer matched BenchOptions::keep_patterns); nothing to "
          "compare",
          r.mode);
    r.family = std::string(quant_family_name(threshold_spec->family()));
    r.threshold_pct = max_ppl_increase_pct(*threshold_spec);

    const std::string stage = fmt::format("[{}/{}] {}", i + 1, specs.size(), r.mode);
    const ComparisonResult c = compare_models(*base, *cand, tokens, o.ctx, o.samples, [&](int64_t d, int64_t n) {
      if (progress) progress(fmt::format("{} perplexity", stage), d, n);
    });
    rep.ctx = c.ctx;
    rep.windows = c.windows;
    rep.scored_tokens = c.scored_tokens;
    if (i == 0)  // every mode runs the same windows: said once
      if (const std::string w = samples_beyond_text_warning(o.samples, rep.windows, rep.text_tokens, rep.ctx);
          !w.empty())
        warn(w);
    r.eval_seconds = c.seconds;
    r.ppl_before = c.ppl_ref;
    r.ppl_after = c.ppl_cand;
    r.mean_nll_before = c.scored_tokens ? c.nll_ref / double(c.scored_tokens) : 0.0;
    r.mean_nll_after = c.scored_tokens ? c.nll_cand / double(c.scored_tokens) : 0.0;
    // ppl_after / ppl_before - 1 = exp(Δ mean NLL) - 1: finite even where a perplexity overflowed to inf.
    r.ppl_delta_pct = c.scored_tokens ? std::expm1(r.mean_nll_after - r.mean_nll_before) * 100.0
                                      : (c.ppl_cand / c.ppl_ref - 1.0) * 100.0;
    r.pass = r.ppl_delta_pct < r.threshold_pct;
    r.kl_div = c.mean_kl;
    r.top1_agreement = c.top1_agreement;

    r.weight_bytes_before = base->disk_weight_bytes();
    r.weight_bytes_after = cand->weight_bytes();
    // The layers in the checkpoint's dtype, for every mode: an adaptive plan's report counts them so; a fixed
    // mode's (QuantizeReport::quantized_bytes_before) counts them in FP32, as the loaded model held them.
    r.linear_bytes_before = qr.quantized_bytes_before;
    if (!specs[i].adaptive) {
      const OnDiskLinearBytes disk = quantized_layers_on_disk(*base, qr);
      r.linear_bytes_before = disk.bytes;
      r.linear_before_dtype = disk.dtypes;
    }
    r.linear_bytes_after = qr.quantized_bytes_after;
    r.bits_per_weight = qr.bits_per_weight();

    if (o.measure_latency) {
      if (progress) progress(fmt::format("{} latency", stage), 0, 1);
      const auto lat = measure_latency({base.get(), cand.get()}, tokens, latency);
      r.latency_before = lat[0];
      r.latency_after = lat[1];
      r.speedup = lat[1].decode_ms_per_token > 0 ? lat[0].decode_ms_per_token / lat[1].decode_ms_per_token : 0;
      if (progress) progress(fmt::format("{} latency", stage), 1, 1);
    }
    r.rss_bytes = current_rss_bytes();
    rep.results.push_back(std::move(r));
    if (on_result) on_result(rep);
  }
  // The kernel updates VmHWM lazily, so it can read below a VmRSS sampled
  // earlier: the peak is at least every resident figure reported.
  rep.peak_rss_bytes = std::max(peak_rss_bytes(), current_rss_bytes());
  for (const auto& r : rep.results) rep.peak_rss_bytes = std::max(rep.peak_rss_bytes, r.rss_bytes);
  return rep;
}

}  // namespace kq
