#include <algorithm>
#include <chrono>
#include <functional>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "api/awq.hpp"
#include "api/hold_unquantized.hpp"
#include "api/layer_weight.hpp"
#include "kernels/cpu/ops_threads.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"
#include "quant/keep_pattern.hpp"

namespace kq {
namespace {

/// The keep patterns compiled (bounded PCRE2, src/quant/keep_pattern.hpp); a
/// bad one is InvalidArgument "keep pattern '<p>' ...".
std::vector<KeepPattern> compile_patterns(const std::vector<std::string>& patterns) {
  try {
    return compile_keep_patterns(patterns);
  } catch (const InvalidArgument& e) {
    raise<InvalidArgument>("keep pattern {}", e.what());
  }
}

/// Every layer_specs entry names a linear layer of `model` and holds a valid spec (or none).
void check_layer_specs(Model& model, const std::map<std::string, std::optional<QuantSpec>>& layer_specs) {
  if (layer_specs.empty()) return;
  const std::vector<LinearSlot> slots = model.linear_layers();
  for (const auto& [name, spec] : layer_specs) {
    if (std::none_of(slots.begin(), slots.end(), [&](const LinearSlot& s) { return s.name == name; }))
      raise<InvalidArgument>("layer_specs: '{}' is not a linear layer of the model (layer names look like '{}')",
                             name, slots.empty() ? std::string("?") : slots.front().name);
    if (!spec) continue;
    try {
      validate_quant_spec(*spec);
    } catch (const InvalidArgument& e) {
      raise<InvalidArgument>("layer_specs['{}']: {}", name, e.what());
    }
  }
}

/// quantize_model's refusal of a model that is already quantized, naming its first quantized layer.
[[noreturn]] void raise_already_quantized(const std::string& layer, const std::string& format) {
  raise<InvalidArgument>(
      "the model is already quantized (layer '{}' is {}: loaded from a quantized folder, or quantized before); load "
      "the original model to requantize",
      layer, format);
}

using Clock = std::chrono::steady_clock;

/// quantize_model's decisions and step for each linear layer, in one place for
/// its two callers: quantize_model (every layer of a loaded model, in place)
/// and load_quantized's streaming load (each layer as Model::load reads it).
/// The layers go through plan() and step() in Model::linear_layers() order,
/// then finish() ends the quantization.
class LayerQuantizer {
 public:
  /// Quantizes layer `op`, whose weight is `weight` (layer_weight_f32), by
  /// `spec` in step() instead of round-to-nearest (AWQ), filling lq's AWQ fields.
  using Quantize = std::function<std::unique_ptr<Linear>(Linear& op, const Tensor& weight, const QuantSpec& spec,
                                                         LayerQuantization& lq)>;

  /// Checks options.spec and compiles options.keep_patterns: InvalidArgument
  /// as quantize_model. `options` must outlive the object.
  explicit LayerQuantizer(const QuantizeOptions& options) : options_(options) {
    validate_quant_spec(options.spec);
    keep_ = compile_patterns(options.keep_patterns);
    pattern_used_.assign(keep_.size(), false);
  }

  /// The spec layer `name` gets, or std::nullopt to keep it in high
  /// precision: its layer_specs entry; else kept when it is the lm_head
  /// without quantize_lm_head or a keep pattern matches it (the pattern
  /// counts as used; one that overrides quantize_lm_head is warned about,
  /// queued until flush_warnings()); else options.spec.
  std::optional<QuantSpec> plan(const std::string& name, bool is_lm_head) {
    bool kept = is_lm_head && !options_.quantize_lm_head;
    for (size_t i = 0; i < keep_.size(); ++i)
      if (keep_[i].search(name)) {
        if (is_lm_head && options_.quantize_lm_head && !kept)
          queued_.push_back(fmt::format("QuantizeOptions::quantize_lm_head is set, but keep pattern '{}' keeps the "
                                        "lm_head '{}' in high precision",
                                        options_.keep_patterns[i], name));
        kept = pattern_used_[i] = true;
      }
    if (const auto it = options_.layer_specs.find(name); it != options_.layer_specs.end()) return it->second;
    if (kept) return std::nullopt;
    return options_.spec;
  }

  /// Replaces `op` by its quantization with `spec` (by `quantize` when given,
  /// else round-to-nearest), or keeps it when `spec` is std::nullopt, and
  /// appends the layer's LayerQuantization to `report`, adding a quantized
  /// layer to its totals. LayerQuantization::bytes_before is op->weight_bytes(),
  /// but for a 16-bit op (make_linear_w16: a layer held in its disk dtype by
  /// load_to_quantize, an lm_head read so) the bytes of the FP32 op Model::load
  /// builds for it. Throws InvalidArgument naming the layer: for a
  /// weight that layer_weight_f32 refuses, and (with the mode) when the
  /// quantization fails (e.g. a non-finite weight).
  void step(const std::string& name, std::unique_ptr<Linear>& op, const std::optional<QuantSpec>& spec,
            QuantizeReport& report, const Quantize& quantize = {}) const {
    LayerQuantization lq;
    lq.name = name;
    lq.out_features = op->out_features();
    lq.in_features = op->in_features();
    lq.bytes_before = op->weight_bytes();
    if (linear_w16_weight(*op) != nullptr) {
      const Tensor b = op->bias();
      lq.bytes_before = size_t(lq.out_features * lq.in_features) * sizeof(float) + (b.defined() ? b.nbytes() : 0);
    }
    if (spec) {
      {
        const Tensor weight = layer_weight_f32(*op, name);  // a 16-bit op's: a copy, freed at the end of the block
        try {
          op = quantize ? quantize(*op, weight, *spec, lq) : quantize_linear(weight, op->bias(), *spec);
        } catch (const InvalidArgument& e) {
          raise<InvalidArgument>("layer '{}' ({}): {}", name, spec->name(), e.what());
        }
      }
      return_freed_memory();  // the layer's FP32 weight and the op it replaced
      lq.quantized = true;
      report.quantized_bytes_before += lq.bytes_before;
      report.quantized_bytes_after += op->weight_bytes();
      const Tensor b = op->bias();
      report.quantized_matrix_bytes += op->weight_bytes() - (b.defined() ? b.nbytes() : 0);
      report.quantized_elements += lq.out_features * lq.in_features;
    }
    lq.format = op->format();
    lq.bytes_after = op->weight_bytes();
    report.layers.push_back(std::move(lq));
  }

  /// Hands the warnings plan() queued to kq::warn, in order.
  void flush_warnings() {
    for (const std::string& w : queued_) warn(w);
    queued_.clear();
  }

  /// After the last step(), on the model as built: warns about a quantized
  /// lm_head tied to the token embedding (a second copy); when a layer was
  /// quantized, holds what stays unquantized in its disk dtype
  /// (hold_unquantized_and_report); lists each keep pattern that matched no
  /// layer in report.unmatched_keep_patterns and warns about it.
  void finish(Model& model, QuantizeReport& report) const {
    const std::vector<LinearSlot> slots = model.linear_layers();
    for (size_t i = 0; i < slots.size() && i < report.layers.size(); ++i)
      if (slots[i].is_lm_head && report.layers[i].quantized && model.config().tie_word_embeddings)
        warn(fmt::format(
            "QuantizeOptions::quantize_lm_head: this model ties lm_head to the token embedding, which the input "
            "side still needs as it is; the quantized lm_head ({:.2f} MiB) is a second copy, so the model grows by "
            "that much",
            double(report.layers[i].bytes_after) / (1024.0 * 1024.0)));
    // What stays unquantized is held in its on-disk dtype (BF16/F16 checkpoints:
    // half the bytes of F32, the same values); the kept layers' report follows.
    if (report.quantized_elements > 0) hold_unquantized_and_report(model, report);
    for (size_t i = 0; i < keep_.size(); ++i) {
      if (pattern_used_[i]) continue;
      report.unmatched_keep_patterns.push_back(options_.keep_patterns[i]);
      warn(fmt::format("QuantizeOptions::keep_patterns '{}' matches no linear layer, so it keeps nothing (layer "
                       "names look like '{}')",
                       options_.keep_patterns[i], slots.empty() ? std::string("?") : slots.front().name));
    }
  }

 private:
  const QuantizeOptions& options_;
  std::vector<KeepPattern> keep_;
  std::vector<bool> pattern_used_;
  std::vector<std::string> queued_;  // plan()'s warnings
};

}  // namespace

namespace {
/// Each kept layer's LayerQuantization::format and bytes_after, from the op its slot holds now.
void report_kept_layers(Model& model, QuantizeReport& report) {
  const std::vector<LinearSlot> slots = model.linear_layers();
  for (size_t i = 0; i < slots.size() && i < report.layers.size(); ++i) {
    LayerQuantization& lq = report.layers[i];
    if (lq.quantized) continue;
    lq.format = (*slots[i].op)->format();
    lq.bytes_after = (*slots[i].op)->weight_bytes();
  }
}
}  // namespace

void hold_unquantized_and_report(Model& model, QuantizeReport& report) {
  model.hold_unquantized_in_disk_dtype();
  report_kept_layers(model, report);
}

QuantizeReport quantize_model(Model& model, const QuantizeOptions& options) {
  const Model::InUse in_use(model, "quantize_model");  // it replaces the model's ops
  const cpu::OmpThreadsScope threads(resolve_threads(model.context().threads));  // every region below, AWQ's too
  LayerQuantizer quantizer(options);
  check_layer_specs(model, options.layer_specs);
  model.check_linear_layers("quantize_model");
  const std::set<std::string> unit_scale(options.awq_unit_scale_layers.begin(), options.awq_unit_scale_layers.end());
  {
    const std::vector<LinearSlot> slots = model.linear_layers();
    for (const std::string& name : unit_scale)
      if (std::none_of(slots.begin(), slots.end(), [&](const LinearSlot& s) { return s.name == name; }))
        raise<InvalidArgument>("QuantizeOptions::awq_unit_scale_layers: '{}' is not a linear layer of the model "
                               "(layer names look like '{}')",
                               name, slots.empty() ? std::string("?") : slots.front().name);
  }
  const auto t0 = Clock::now();
  QuantizeReport report;

  // A model loaded from a quantized folder is refused as a whole, also when
  // every quantized layer would be kept (e.g. --keep .): re-saving its layers
  // as they are would pass for a quantization of 0 layers.
  for (const LinearSlot& slot : model.linear_layers())
    if (quantized_linear_spec(**slot.op) != nullptr) raise_already_quantized(slot.name, (*slot.op)->format());
  // The spec of every layer to quantize (kept layers have none).
  std::map<std::string, QuantSpec> plan;
  for (const LinearSlot& slot : model.linear_layers())
    if (std::optional<QuantSpec> spec = quantizer.plan(slot.name, slot.is_lm_head)) plan.emplace(slot.name, *spec);
  quantizer.flush_warnings();
  // AWQ layers: activation statistics from the calibration text, on the model as loaded.
  std::map<std::string, awq::ActivationStats> stats;
  if (std::any_of(plan.begin(), plan.end(), [](const auto& p) { return p.second.awq; }))
    stats = awq::collect_activation_stats(model, options.calibration.tokens, options.calibration,
                                          [&](const std::string& name) {
                                            const auto it = plan.find(name);
                                            return it != plan.end() && it->second.awq;
                                          });

  // AWQ over linears that read one input (Llama's q/k/v, gate/up): one s for
  // the group, as AWQ's reference code scales them, so a backend can still
  // fuse them (the GPU's fused GEMVs need one x for the group).
  std::map<std::string, awq::ScaleSearch> awq_grouped;
  std::map<std::string, std::vector<std::string>> awq_groups;  // each grouped layer's group (LayerQuantization::awq_group)
  if (!stats.empty()) {
    std::map<std::string, Linear*> ops;
    for (const LinearSlot& slot : model.linear_layers()) ops.emplace(slot.name, slot.op->get());
    for (const std::vector<std::string>& group : model.fusion_groups()) {
      const auto first = plan.find(group.empty() ? std::string() : group.front());
      if (group.size() < 2 || first == plan.end() || !first->second.awq) continue;
      const bool same = std::all_of(group.begin(), group.end(), [&](const std::string& n) {
        const auto it = plan.find(n);
        return it != plan.end() && it->second.name() == first->second.name();
      });
      if (!same) continue;  // members of other precisions: each searched alone below
      std::vector<Tensor> weights, biases;
      for (const std::string& n : group) {
        weights.push_back(layer_weight_f32(*ops.at(n), n));
        biases.push_back(ops.at(n)->bias());
      }
      std::vector<awq::ScaleSearch> r;
      const bool fixed = std::any_of(group.begin(), group.end(), [&](const std::string& n) { return unit_scale.count(n) > 0; });
      try {
        r = awq::search_group_scales(weights, biases, stats.at(group.front()), first->second,
                                     options.calibration.grid, true, !fixed);
      } catch (const InvalidArgument& e) {  // e.g. a non-finite weight: name the group's layers
        raise<InvalidArgument>("layers '{}': {}", fmt::join(group, "', '"), e.what());
      }
      for (size_t i = 0; i < group.size(); ++i) {
        awq_grouped.emplace(group[i], std::move(r[i]));
        awq_groups.emplace(group[i], group);
      }
      weights.clear();  // the group's FP32 weights (16-bit ops': copies)
      return_freed_memory();
    }
  }

  // AWQ layers: the scales searched for the group, else for the layer alone.
  const LayerQuantizer::Quantize awq_quantize = [&](Linear& op, const Tensor& weight, const QuantSpec& spec,
                                                    LayerQuantization& lq) {
    const auto grouped = awq_grouped.find(lq.name);
    const auto g = awq_groups.find(lq.name);
    lq.awq_unit_scale = g != awq_groups.end()
                            ? std::any_of(g->second.begin(), g->second.end(),
                                          [&](const std::string& n) { return unit_scale.count(n) > 0; })
                            : unit_scale.count(lq.name) > 0;
    awq::ScaleSearch r = grouped != awq_grouped.end()
                             ? std::move(grouped->second)
                             : awq::search_scales(weight, op.bias(), stats.at(lq.name), spec, options.calibration.grid,
                                                  true, !lq.awq_unit_scale);
    lq.awq_alpha = r.alpha;
    lq.awq_duo = r.duo;
    lq.awq_rtn_error = r.rtn_error;
    lq.awq_error = r.error;
    if (g != awq_groups.end()) lq.awq_group = g->second;
    return std::move(r.op);
  };
  for (const LinearSlot& slot : model.linear_layers()) {
    const auto it = plan.find(slot.name);
    const std::optional<QuantSpec> spec = it != plan.end() ? std::optional<QuantSpec>(it->second) : std::nullopt;
    quantizer.step(slot.name, *slot.op, spec, report, spec && spec->awq ? awq_quantize : LayerQuantizer::Quantize());
  }
  quantizer.finish(model, report);
  report.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return report;
}

namespace {

/// load_quantized without AWQ and layer_specs: each linear layer is quantized
/// (or, kept, held in its 16-bit disk dtype when it was BF16/F16 on disk) as
/// Model::load reads it, so the host holds one layer's FP32 weights at a time;
/// the embedding tables and an unquantized lm_head of a BF16/F16 checkpoint
/// are read in that dtype (Model::load's tables_in_disk_dtype), never as F32.
/// The model and the report are those of Model::load + quantize_model;
/// report.seconds counts the quantization steps only, not the reading.
std::unique_ptr<Model> load_streaming(const std::filesystem::path& dir, LayerQuantizer& quantizer,
                                      const ExecContext& host, QuantizeReport& report) {
  std::string quantized, quantized_format;  // a layer the folder holds quantized: refused once loaded
  Clock::duration spent{};
  const LinearTransform transform = [&](const std::string& name, std::unique_ptr<Linear> op) {
    if (!quantized.empty()) return op;  // refused below, after the load's own errors, as quantize_model does
    if (quantized_linear_spec(*op) != nullptr) {
      quantized = name;
      quantized_format = op->format();
      return op;
    }
    const auto t0 = Clock::now();
    // Both architectures name their output projection "lm_head" (LinearSlot::is_lm_head).
    const std::optional<QuantSpec> spec = quantizer.plan(name, name == "lm_head");
    // An lm_head of a 16-bit checkpoint arrives as a 16-bit op (tied: over the 16-bit table); step() counts it
    // as quantize_model does, as the FP32 op Model::load builds without tables_in_disk_dtype.
    quantizer.step(name, op, spec, report);
    // A kept layer read as an FP32 op is held now as finish() would hold it (a 16-bit one already is); its FP32
    // weight goes back to the system (return_freed_memory), as a quantized one's does in step().
    if (!spec)
      if (auto w16 = linear_in_disk_dtype(*op)) {
        op = std::move(w16);
        return_freed_memory();
      }
    spent += Clock::now() - t0;
    return op;
  };
  auto model = Model::load(dir, host, transform, /*tables_in_disk_dtype=*/true);
  if (!quantized.empty()) raise_already_quantized(quantized, quantized_format);
  const auto t0 = Clock::now();
  quantizer.flush_warnings();  // after Model::load's own warnings, as for Model::load + quantize_model
  // Nothing quantized (every layer kept): quantize_model holds nothing in 16 bits then, so neither does this,
  // and the report shows the F32 ops.
  if (report.quantized_elements == 0) {
    model->hold_unquantized_in_f32();
    report_kept_layers(*model, report);
  }
  quantizer.finish(*model, report);
  report.seconds = std::chrono::duration<double>(spent + (Clock::now() - t0)).count();
  return model;
}

}  // namespace

std::unique_ptr<Model> load_to_quantize(const std::filesystem::path& dir, const ExecContext& ctx) {
  if (ctx.device != Device::CPU)
    raise<InvalidArgument>("load_to_quantize: ExecContext::device must be the CPU, where quantize_model runs (got "
                           "{}); move the quantized model with Model::to_device",
                           device_name(ctx.device));
  bool quantized = false;  // a layer the folder holds quantized: the rest pass as read (quantize_model refuses it)
  const LinearTransform transform = [&](const std::string&, std::unique_ptr<Linear> op) {
    if (quantized || quantized_linear_spec(*op) != nullptr) {
      quantized = true;
      return op;
    }
    // An FP32 op over a BF16/F16 weight: held in that dtype, its FP32 weight given back at once.
    if (auto w16 = linear_in_disk_dtype(*op)) {
      op = std::move(w16);
      return_freed_memory();
    }
    return op;
  };
  return Model::load(dir, ctx, transform, /*tables_in_disk_dtype=*/true);
}

std::unique_ptr<Model> load_quantized(const std::filesystem::path& dir, const QuantizeOptions& options,
                                      const ExecContext& ctx, QuantizeReport* report) {
  // Quantization runs on the host (round-to-nearest over the FP32 weights);
  // a model for another device is built on the CPU, quantized, then moved.
  ExecContext host = ctx;
  host.device = Device::CPU;
  QuantizeReport r;
  std::unique_ptr<Model> model;
  // AWQ calibrates on the whole model, and layer_specs are checked against
  // the loaded model's layers: those load first, held in their 16-bit disk
  // dtype (load_to_quantize), each layer converted to FP32 only while it is
  // searched and quantized. So do invalid options, for quantize_model to
  // report them after the load's own errors.
  std::optional<LayerQuantizer> quantizer;
  if (!options.spec.awq && options.layer_specs.empty()) {
    try {
      quantizer.emplace(options);
    } catch (const InvalidArgument&) {  // quantize_model raises it again
    }
  }
  if (quantizer) {
    model = load_streaming(dir, *quantizer, host, r);
  } else {
    model = load_to_quantize(dir, host);
    r = quantize_model(*model, options);
    // Nothing quantized (every layer kept): the model Model::load + quantize_model leave, all F32.
    if (r.quantized_elements == 0) {
      model->hold_unquantized_in_f32();
      report_kept_layers(*model, r);
    }
  }
  if (ctx.device != Device::CPU) model->to_device(ctx);
  if (report) *report = std::move(r);
  return model;
}

std::unique_ptr<Model> LLMOptimizer::load_model(const std::filesystem::path& dir) const {
  if (!config_.quantization) return Model::load(dir, config_.context);
  return load_quantized(dir, *config_.quantization, config_.context, &report_);
}

}  // namespace kq
