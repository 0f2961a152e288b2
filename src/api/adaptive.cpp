// Entropy-based adaptive precision (include/kq/adaptive.hpp): per-layer
// analysis (weight entropy, measured error of each candidate) and the plan.
// The knapsack itself is in adaptive_allocate.cpp.
#include "kq/adaptive.hpp"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdint>
#include <system_error>
#include <vector>

#include "api/hold_unquantized.hpp"
#include "api/layer_weight.hpp"
#include "core/enum_name.hpp"
#include "kernels/cpu/ops_threads.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/model.hpp"
#include "kq/warning.hpp"
#include "quant/keep_pattern.hpp"

namespace kq {
namespace {

/// Lower case, '_' as '-'.
std::string normalise(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = c == '_' ? '-' : char(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

/// ||a − b||² / ||a||² in double (0 when a = 0).
double relative_error(const float* a, const float* b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; ++i) {
    const double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(a[i]) * double(a[i]);
  }
  return den > 0 ? num / den : 0.0;
}

/// `s` for a message: as it is up to 48 characters, else its first 40 and its length.
std::string shown(std::string_view s) {
  if (s.size() <= 48) return std::string(s);
  return fmt::format("{}... ({} characters)", s.substr(0, 40), s.size());
}

void check_target(const AdaptiveOptions& o) {
  // round(target · 10^6) in [1, 999999]: adaptive_mode_name's P (4 decimals) is then in (0, 100).
  const double units = std::round(o.target_reduction * 1e6);
  if (!std::isfinite(o.target_reduction) || o.target_reduction <= 0 || o.target_reduction >= 1 || units < 1 ||
      units > 999999)
    raise<InvalidArgument>(
        "adaptive precision: target reduction must be in (0, 1), at least 0.000001 from either end (e.g. 0.8 = "
        "remove 80 %), got {}",
        o.target_reduction);
}

void check_strategy(const AdaptiveOptions& o) {
  if (o.strategy != AllocationStrategy::Entropy && o.strategy != AllocationStrategy::ReconstructionError &&
      o.strategy != AllocationStrategy::Uniform)
    raise<InvalidArgument>("adaptive precision: AdaptiveOptions.strategy {} is not an AllocationStrategy (entropy, "
                           "error, uniform)",
                           int(o.strategy));
}

void check_options(const AdaptiveOptions& o) {
  check_target(o);
  check_strategy(o);
  if (o.candidates.empty()) raise<InvalidArgument>("adaptive precision: give at least one candidate format");
  for (size_t i = 0; i < o.candidates.size(); ++i) {
    const QuantSpec& c = o.candidates[i];
    try {
      validate_quant_spec(c);
    } catch (const InvalidArgument& e) {
      raise<InvalidArgument>("adaptive precision: candidate {}: {}", i, e.what());
    }
    if (c.awq)
      raise<InvalidArgument>(
          "adaptive precision: candidate '{}' is an AWQ mode, which needs calibration; "
          "give round-to-nearest formats",
          c.name());
    for (size_t j = 0; j < i; ++j)
      if (o.candidates[j] == c)
        raise<InvalidArgument>("adaptive precision: candidate '{}' is given twice", c.name());
  }
}

/// Bytes of a linear layer's bias as held (F32 [N]; 0 without one).
size_t bias_bytes(const Linear& op) {
  const Tensor b = op.bias();
  return b.defined() ? b.nbytes() : 0;
}

/// "f32", "bf16" or "f16": the keep option's format for a layer held in `d`.
std::string held_name(DType d) { return d == DType::BF16 ? "bf16" : d == DType::F16 ? "f16" : "f32"; }

/// The keep option of a layer holding `op`: what its matrix costs (bias excluded) once the model is
/// quantized, and the option's format. kq's own dense ops are then held in their on-disk dtype (BF16 / F16 for
/// a 16-bit checkpoint, Model::hold_unquantized_in_disk_dtype); any other op (a caller's own Linear put into
/// the slot, e.g. a wrapper) is left as it is, so it costs the bytes it reports, under its own format.
struct KeepOption {
  size_t bytes = 0;
  std::string format;
};

/// The KeepOption of a layer holding `op`.
KeepOption keep_option(const Linear& op) {
  const size_t nk = size_t(op.out_features()) * size_t(op.in_features());
  if (const Tensor* w = linear_w16_weight(op)) return {nk * dtype_size(w->dtype()), held_name(w->dtype())};
  if (linear_f32_weight_data(op)) {
    const DType d = linear_f32_disk_dtype(op);
    return {nk * dtype_size(d), held_name(d)};
  }
  const size_t bytes = op.weight_bytes(), bias = bias_bytes(op);
  return {bytes > bias ? bytes - bias : 0, op.format()};
}

/// The held_name of each of `held`, once, in the order first seen, joined with '+' ("bf16", "bf16+f32").
std::string held_names(const std::vector<DType>& held) {
  std::vector<std::string> names;
  for (const DType d : held)
    if (std::string n = held_name(d); std::find(names.begin(), names.end(), n) == names.end())
      names.push_back(std::move(n));
  return fmt::format("{}", fmt::join(names, "+"));
}

/// The fewest bytes of a [N, K] weight matrix among the options of `o`, the
/// keep option costing `keep_bytes`.
size_t smallest_option_bytes(const AdaptiveOptions& o, int64_t N, int64_t K, size_t keep_bytes) {
  size_t m = o.allow_keep ? keep_bytes : SIZE_MAX;
  for (const QuantSpec& spec : o.candidates) m = std::min(m, quantized_weight_bytes(spec, N, K));
  return m;
}

/// Whether the plan can quantize the lm_head: asked for, and not tied to the
/// token embedding (which the input side keeps as it is: a quantized tied
/// lm_head is a second copy, so quantizing it adds bytes instead of removing them).
bool plans_lm_head(const Model& model, const AdaptiveOptions& o) {
  return o.quantize_lm_head && !model.config().tie_word_embeddings;
}

/// The layers a plan covers (not the lm_head unless plans_lm_head, none
/// matching a keep pattern), after checking the options and the model's slots
/// (Model::check_linear_layers); none may be quantized already, and there must be one.
std::vector<LinearSlot> planned_slots(Model& model, const AdaptiveOptions& o,
                                      std::vector<LinearSlot>* kept = nullptr) {
  check_options(o);
  model.check_linear_layers("adaptive precision");
  std::vector<KeepPattern> keep;
  try {
    keep = compile_keep_patterns(o.keep_patterns);
  } catch (const InvalidArgument& e) {
    raise<InvalidArgument>("keep pattern {}", e.what());
  }
  std::vector<LinearSlot> slots;
  for (const LinearSlot& slot : model.linear_layers()) {
    if (slot.is_lm_head && !plans_lm_head(model, o)) continue;
    if (std::any_of(keep.begin(), keep.end(),
                    [&](const KeepPattern& r) { return r.search(slot.name); })) {
      if (kept) kept->push_back(slot);
      continue;
    }
    const Linear& op = **slot.op;
    if (quantized_linear_spec(op) != nullptr)
      raise<InvalidArgument>(
          "layer '{}' is already quantized ({}); load the original model to plan its precision", slot.name,
          op.format());
    slots.push_back(slot);
  }
  if (slots.empty())
    raise<InvalidArgument>(
        "adaptive precision: no linear layer to quantize (every layer is the lm_head or kept)");
  return slots;
}

/// The byte accounting of a plan over `slots`, from their shapes, disk dtypes and keep options alone.
struct PlanBytes {
  size_t before = 0;     ///< Σ N·K · size of LinearSlot::disk_dtype + bias: what the target refers to
  size_t smallest = 0;   ///< Σ smallest option + bias
  size_t biases = 0;     ///< Σ bias
  size_t budget = 0;     ///< floor((1 − target) · before): the most bytes the plan may keep
};

/// PlanBytes of `slots`; throws InvalidArgument when the target cannot be reached.
PlanBytes plan_bytes(const std::vector<LinearSlot>& slots, const AdaptiveOptions& o) {
  PlanBytes b;
  std::vector<DType> held;  // for the message
  for (const LinearSlot& slot : slots) {
    const Linear& op = **slot.op;
    const size_t bias = bias_bytes(op);
    b.before += size_t(op.out_features()) * size_t(op.in_features()) * dtype_size(slot.disk_dtype) + bias;
    b.smallest += smallest_option_bytes(o, op.out_features(), op.in_features(), keep_option(op).bytes) + bias;
    b.biases += bias;
    held.push_back(slot.disk_dtype);
  }
  b.budget = size_t(std::floor((1.0 - o.target_reduction) * double(b.before)));
  if (b.smallest > b.budget)
    raise<InvalidArgument>(
        "adaptive precision: target reduction {:.6g} cannot be reached: with every layer at its smallest "
        "candidate the reduction is {:.6f} (the largest reachable; reductions are of the layers' bytes as the "
        "model holds them unquantized, in their on-disk dtype {}, biases included)",
        o.target_reduction, std::floor((1.0 - double(b.smallest) / double(b.before)) * 1e6) / 1e6,
        held_names(held));
  return b;
}

/// The analysis of one layer (options in AdaptiveOptions order, then keep), losses filled in.
LayerAnalysis analyse_layer(const LinearSlot& slot, const AdaptiveOptions& o) {
  const Linear& op = **slot.op;
  LayerAnalysis la;
  la.name = slot.name;
  la.N = op.out_features();
  la.K = op.in_features();
  la.bias_bytes = bias_bytes(op);
  la.held = slot.disk_dtype;
  const Tensor w = layer_weight_f32(op, slot.name);  // F32 [N, K]
  const float* wp = w.data<float>();
  const int64_t n = w.numel();
  la.entropy_bits = weight_entropy_bits(std::span<const float>(wp, size_t(n)));
  la.sensitivity = o.strategy == AllocationStrategy::Entropy ? la.entropy_bits / 8.0 : 1.0;
  for (const QuantSpec& spec : o.candidates) {
    CandidateAnalysis c;
    c.spec = spec;
    c.format = spec.name();
    c.bytes = quantized_weight_bytes(spec, la.N, la.K);
    const Tensor dq = quantize_linear(w, Tensor(), spec)->dequantized_weight();
    c.rel_error = relative_error(wp, dq.data<float>(), n);
    c.est_loss = la.sensitivity * c.rel_error;
    la.candidates.push_back(std::move(c));
  }
  if (o.allow_keep) {  // priced as held once the model is quantized: a 16-bit checkpoint's layers stay 16-bit
    KeepOption keep = keep_option(op);
    CandidateAnalysis c;
    c.format = std::move(keep.format);
    c.bytes = keep.bytes;
    la.candidates.push_back(std::move(c));
  }
  return la;
}

/// l.choice(), after checking that l.chosen is an index into l.candidates (a hand-edited plan may hold any
/// number): InvalidArgument prefixed by `where`, naming the layer.
const CandidateAnalysis& checked_choice(const LayerAnalysis& l, const char* where) {
  if (l.chosen < 0 || size_t(l.chosen) >= l.candidates.size())
    raise<InvalidArgument>("{}: layer '{}' has chosen = {}, outside its {} candidates", where, l.name, l.chosen,
                           l.candidates.size());
  return l.choice();
}

/// Uniform: the option index (same for every layer) with the most total bytes
/// within the budget (`budget` and `bytes_before` include the biases).
int uniform_choice(const std::vector<LayerAnalysis>& layers, size_t budget, const AdaptiveOptions& o,
                   size_t bytes_before) {
  int best = -1;
  size_t best_bytes = 0, smallest = SIZE_MAX;
  for (size_t c = 0; c < layers.front().candidates.size(); ++c) {
    size_t total = 0;
    for (const LayerAnalysis& l : layers) total += l.candidates[c].bytes + l.bias_bytes;
    smallest = std::min(smallest, total);
    if (total <= budget && (best < 0 || total > best_bytes)) {
      best = int(c);
      best_bytes = total;
    }
  }
  if (best < 0)
    raise<InvalidArgument>(
        "adaptive precision: target reduction {:.4f} cannot be reached with one format for every layer "
        "(uniform); "
        "the largest uniform reduction is {:.4f}",
        o.target_reduction, 1.0 - double(smallest) / double(bytes_before));
  return best;
}

}  // namespace

/// Every AllocationStrategy, in declaration order.
constexpr AllocationStrategy kAllocationStrategies[] = {
    AllocationStrategy::Entropy, AllocationStrategy::ReconstructionError, AllocationStrategy::Uniform};

std::string_view allocation_strategy_name(AllocationStrategy s) {
  switch (s) {
    case AllocationStrategy::Entropy:
      return "entropy";
    case AllocationStrategy::ReconstructionError:
      return "error";
    case AllocationStrategy::Uniform:
      return "uniform";
  }
  return unknown_enum_name(int64_t(s));
}

AllocationStrategy parse_allocation_strategy(std::string_view s) {
  const std::string v = normalise(s);
  if (v == "entropy") return AllocationStrategy::Entropy;
  if (v == "error" || v == "reconstruction-error") return AllocationStrategy::ReconstructionError;
  if (v == "uniform") return AllocationStrategy::Uniform;
  raise<InvalidArgument>("unknown allocation strategy '{}' (valid: entropy, error, uniform)", s);
}

double weight_entropy_bits(std::span<const float> w) {
  if (w.empty()) raise<InvalidArgument>("weight_entropy_bits: empty tensor");
  float absmax = 0;
  for (const float x : w) {
    if (!std::isfinite(x)) raise<InvalidArgument>("weight_entropy_bits: non-finite value {}", x);
    absmax = std::max(absmax, std::fabs(x));
  }
  if (absmax == 0) return 0.0;
  std::vector<int64_t> counts(kEntropyBins, 0);
  for (const float x : w) {
    const double u = double(x) / double(absmax);  // [-1, 1]
    const int b = std::min(int(std::floor((u + 1.0) * 0.5 * kEntropyBins)), kEntropyBins - 1);
    ++counts[size_t(std::max(b, 0))];
  }
  double h = 0;
  const double total = double(w.size());
  for (const int64_t c : counts)
    if (c > 0) {
      const double p = double(c) / total;
      h -= p * std::log2(p);
    }
  return std::max(h, 0.0);  // a single bin gives -0
}

QuantizeOptions AdaptivePlan::to_options() const {
  QuantizeOptions o;
  if (!layers.empty()) {
    const auto& cands = layers.front().candidates;
    const auto first =
        std::find_if(cands.begin(), cands.end(), [](const CandidateAnalysis& c) { return c.spec; });
    if (first != cands.end()) o.spec = *first->spec;
  }
  o.quantize_lm_head = quantize_lm_head;
  o.keep_patterns = keep_patterns;
  for (const LayerAnalysis& l : layers) o.layer_specs[l.name] = checked_choice(l, "AdaptivePlan::to_options").spec;
  return o;
}

double check_adaptive_options(Model& model, const AdaptiveOptions& o) {
  const PlanBytes b = plan_bytes(planned_slots(model, o), o);
  return 1.0 - double(b.smallest) / double(b.before);
}

double check_adaptive_reach(Model& model, const AdaptiveOptions& o, bool target_is_default,
                            const std::string& target_option) {
  const std::vector<LinearSlot> slots = planned_slots(model, o);
  try {
    const PlanBytes b = plan_bytes(slots, o);
    return 1.0 - double(b.smallest) / double(b.before);
  } catch (const InvalidArgument& e) {
    if (!target_is_default) throw;
    AdaptiveOptions least = o;  // the smallest target there is: its bytes give the model's reach
    least.target_reduction = 0.000001;
    const PlanBytes b = plan_bytes(slots, least);
    const double reach = std::floor((1.0 - double(b.smallest) / double(b.before)) * 1e6) / 1e6;  // (6 decimals)
    const bool sixteen_bit = std::any_of(slots.begin(), slots.end(), [](const LinearSlot& s) {
      return s.disk_dtype == DType::BF16 || s.disk_dtype == DType::F16;
    });
    raise<InvalidArgument>(
        "{}; {:g} is the default target: give {}the mode adaptive-rP with P up to {:.4f} instead{}", e.what(),
        o.target_reduction, target_option.empty() ? "" : fmt::format("{} {:.6g} or less, or ", target_option, reach),
        reach * 100,
        sixteen_bit && reach >= 0.6 ? " (adaptive-r60 keeps of a BF16 / F16 checkpoint the bytes adaptive-r80 keeps "
                                      "of the same weights in F32)"
                                    : "");
  }
}

double adaptive_reduction_limit(const AdaptiveOptions& o, DType held) {
  check_options(o);
  if (held != DType::F32 && held != DType::BF16 && held != DType::F16)
    raise<InvalidArgument>("adaptive_reduction_limit: held dtype {} is not F32, BF16 or F16", dtype_name(held));
  constexpr int64_t kSide = int64_t(1) << 20;  // a 2^20 x 2^20 layer: larger than any model's
  const double before = double(kSide) * double(kSide) * double(dtype_size(held));
  return 1.0 - double(smallest_option_bytes(o, kSide, kSide, size_t(before))) / before;
}

AdaptivePlan plan_adaptive_precision(Model& model, const AdaptiveOptions& o) {
  const cpu::OmpThreadsScope threads(resolve_threads(model.context().threads));  // the candidates' quantizations
  // Every check that needs no analysis first (options, layers, reachability).
  std::vector<LinearSlot> kept;
  const std::vector<LinearSlot> slots = planned_slots(model, o, &kept);
  const PlanBytes bytes = plan_bytes(slots, o);
  AdaptivePlan plan;
  for (const LinearSlot& slot : kept) {  // counted as plan_bytes counts `before`
    const Linear& op = **slot.op;
    plan.kept_bytes +=
        size_t(op.out_features()) * size_t(op.in_features()) * dtype_size(slot.disk_dtype) + bias_bytes(op);
    ++plan.kept_layers;
  }
  plan.strategy = o.strategy;
  plan.target_reduction = o.target_reduction;
  plan.quantize_lm_head = plans_lm_head(model, o);
  if (o.quantize_lm_head && !plan.quantize_lm_head)
    warn("AdaptiveOptions::quantize_lm_head: this model ties lm_head to the token embedding, which the input side "
         "keeps as it is; a quantized lm_head would be a second copy (more bytes, not fewer), so the plan leaves it "
         "as it is");
  plan.keep_patterns = o.keep_patterns;
  for (const LinearSlot& slot : slots) plan.layers.push_back(analyse_layer(slot, o));
  plan.bytes_before = bytes.before;

  if (o.strategy == AllocationStrategy::Uniform) {
    const int c = uniform_choice(plan.layers, bytes.budget, o, plan.bytes_before);
    for (LayerAnalysis& l : plan.layers) l.chosen = c;
  } else {
    std::vector<std::vector<AllocationChoice>> table;
    for (const LayerAnalysis& l : plan.layers) {
      std::vector<AllocationChoice> opts;
      for (const CandidateAnalysis& c : l.candidates) opts.push_back({c.bytes, c.est_loss});
      table.push_back(std::move(opts));
    }
    // The biases stay in every option: the matrices share what is left of the budget.
    const std::vector<int> pick =
        allocate_precision(table, bytes.budget - bytes.biases, kMaxExactKnapsackStates, &plan.exact);
    for (size_t i = 0; i < pick.size(); ++i) plan.layers[i].chosen = pick[i];
  }
  for (const LayerAnalysis& l : plan.layers) {
    plan.bytes_after += l.choice().bytes + l.bias_bytes;
    plan.estimated_loss += l.choice().est_loss;
  }
  plan.achieved_reduction = 1.0 - double(plan.bytes_after) / double(plan.bytes_before);
  return plan;
}

std::string held_dtype_names(const AdaptivePlan& plan) {
  std::vector<DType> held;
  for (const LayerAnalysis& l : plan.layers) held.push_back(l.held);
  return held_names(held);
}

bool is_adaptive_mode(std::string_view name) { return normalise(name).starts_with("adaptive"); }

AdaptiveOptions parse_adaptive_mode(std::string_view name) { return parse_adaptive_mode(name, nullptr); }

AdaptiveOptions parse_adaptive_mode(std::string_view name, AdaptiveModeParts* parts) {
  const std::string v = normalise(name);
  auto bad = [&] {
    raise<InvalidArgument>(
        "mode '{}': an adaptive mode is adaptive[-rP][-entropy|-error|-uniform] with P the per cent of the "
        "linear layers' bytes to remove (as the model holds them unquantized: in its on-disk dtype), a number in "
        "(0, 100) with at most 4 decimals (e.g. adaptive, adaptive-r85, adaptive-r82.5-error)",
        shown(name));
  };
  if (!v.starts_with("adaptive")) bad();
  AdaptiveOptions o;
  std::string_view rest = std::string_view(v).substr(8);
  bool have_target = false, have_strategy = false;
  while (!rest.empty()) {
    if (rest.front() != '-') bad();
    rest.remove_prefix(1);
    const size_t end = rest.find('-');
    const std::string part(rest.substr(0, end));
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
    if (!have_target && !have_strategy && part.size() > 1 && part[0] == 'r') {
      const std::string num = part.substr(1);
      const size_t dot = num.find('.');
      if (num.find_first_not_of("0123456789.") != std::string::npos || num.front() == '.' ||
          num.back() == '.' || std::count(num.begin(), num.end(), '.') > 1 ||
          (dot != std::string::npos && num.size() - dot - 1 > 4))
        bad();
      double pct = 0;  // from_chars: no exception, and 400 nines are out of range (not infinite)
      const auto [end_ptr, ec] = std::from_chars(num.data(), num.data() + num.size(), pct);
      if (ec != std::errc() || end_ptr != num.data() + num.size() || !(pct > 0 && pct < 100)) bad();
      o.target_reduction = pct / 100.0;
      have_target = true;
    } else if (!have_strategy && (part == "entropy" || part == "error" || part == "uniform")) {
      o.strategy = parse_allocation_strategy(part);
      have_strategy = true;
    } else {
      bad();
    }
  }
  if (parts) *parts = AdaptiveModeParts{have_target, have_strategy};
  return o;
}

std::vector<std::string> valid_adaptive_mode_names() {
  std::vector<std::string> names;
  for (const char* base : {"adaptive", "adaptive-rP"}) {  // the grammar of parse_adaptive_mode
    names.push_back(base);
    for (const AllocationStrategy s : kAllocationStrategies)
      names.push_back(fmt::format("{}-{}", base, allocation_strategy_name(s)));
  }
  return names;
}

std::string adaptive_mode_name(const AdaptiveOptions& o) {
  check_target(o);  // a name parse_adaptive_mode would refuse ("adaptive-r150") is never made
  check_strategy(o);
  std::string s = fmt::format("adaptive-r{:g}", std::round(o.target_reduction * 1e6) / 1e4);
  if (o.strategy != AllocationStrategy::Entropy)
    s += fmt::format("-{}", allocation_strategy_name(o.strategy));
  return s;
}

std::optional<QuantSpec> lowest_precision_spec(const AdaptivePlan& plan) {
  std::optional<QuantSpec> best;
  double best_bits = 0;
  for (const LayerAnalysis& l : plan.layers) {
    const CandidateAnalysis& c = checked_choice(l, "lowest_precision_spec");
    if (!c.spec) continue;
    const double bits = bits_per_weight(*c.spec, l.N, l.K);
    if (!best || bits < best_bits) {
      best = c.spec;
      best_bits = bits;
    }
  }
  return best;
}

QuantizeReport quantize_model_adaptive(Model& model, const AdaptiveOptions& options, AdaptivePlan* plan_out) {
  const Model::InUse in_use(model, "quantize_model_adaptive");  // the plan and the quantization, as one call
  AdaptivePlan plan = plan_adaptive_precision(model, options);
  QuantizeReport report = quantize_model(model, plan.to_options());
  // The plan priced its kept layers as held once the model is quantized (16-bit
  // for a 16-bit checkpoint): also when it quantizes none of them.
  if (report.quantized_elements == 0) hold_unquantized_and_report(model, report);
  // The layers the plan keeps unquantized are part of the bytes the target
  // refers to, and of the bits per weight (an FP32 layer is 32 bits/weight, a
  // BF16 one 16: a plan keeping most layers is not "8 bits/weight" because its
  // few quantized ones are). "Before" is what the target refers to: every
  // planned layer in its on-disk dtype (quantize_model counted the quantized
  // ones as the loaded model held them, in F32).
  report.quantized_bytes_before = plan.bytes_before;
  const std::vector<LinearSlot> slots = model.linear_layers();
  for (const LayerQuantization& lq : report.layers)
    if (!lq.quantized && std::any_of(plan.layers.begin(), plan.layers.end(), [&](const LayerAnalysis& l) {
          return l.name == lq.name && !l.choice().spec;
        })) {
      report.quantized_bytes_after += lq.bytes_after;
      size_t bias_bytes = 0;
      for (const LinearSlot& slot : slots)
        if (slot.name == lq.name)
          if (const Tensor b = (*slot.op)->bias(); b.defined()) bias_bytes = b.nbytes();
      report.quantized_matrix_bytes += lq.bytes_after - bias_bytes;
      report.quantized_elements += lq.out_features * lq.in_features;
    }
  if (plan_out) *plan_out = std::move(plan);
  return report;
}

}  // namespace kq
