#include <algorithm>
#include <chrono>
#include <map>

#include <fmt/format.h>

#include "api/awq.hpp"
#include "api/hold_unquantized.hpp"
#include "kernels/linear.hpp"
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

}  // namespace

void hold_unquantized_and_report(Model& model, QuantizeReport& report) {
  model.hold_unquantized_in_disk_dtype();
  const std::vector<LinearSlot> slots = model.linear_layers();
  for (size_t i = 0; i < slots.size() && i < report.layers.size(); ++i) {
    LayerQuantization& lq = report.layers[i];
    if (lq.quantized) continue;
    lq.format = (*slots[i].op)->format();
    lq.bytes_after = (*slots[i].op)->weight_bytes();
  }
}

QuantizeReport quantize_model(Model& model, const QuantizeOptions& options) {
  validate_quant_spec(options.spec);
  const auto keep = compile_patterns(options.keep_patterns);
  check_layer_specs(model, options.layer_specs);
  const auto t0 = std::chrono::steady_clock::now();
  QuantizeReport report;
  std::vector<bool> pattern_used(keep.size(), false);

  // A model loaded from a quantized folder is refused as a whole, also when
  // every quantized layer would be kept (e.g. --keep .): re-saving its layers
  // as they are would pass for a quantization of 0 layers.
  for (const LinearSlot& slot : model.linear_layers())
    if (quantized_linear_spec(**slot.op) != nullptr)
      raise<InvalidArgument>(
          "the model is already quantized (layer '{}' is {}: loaded from a quantized folder, or quantized "
          "before); load the original model to requantize",
          slot.name, (*slot.op)->format());
  // The spec of every layer to quantize (kept layers have none).
  std::map<std::string, QuantSpec> plan;
  for (const LinearSlot& slot : model.linear_layers()) {
    bool kept = slot.is_lm_head && !options.quantize_lm_head;
    for (size_t i = 0; i < keep.size(); ++i)
      if (keep[i].search(slot.name)) {
        if (slot.is_lm_head && options.quantize_lm_head && !kept)
          warn(fmt::format("QuantizeOptions::quantize_lm_head is set, but keep pattern '{}' keeps the lm_head "
                           "'{}' in high precision",
                           options.keep_patterns[i], slot.name));
        kept = pattern_used[i] = true;
      }
    const auto override_it = options.layer_specs.find(slot.name);  // an override decides its layer
    if (override_it != options.layer_specs.end()) kept = !override_it->second.has_value();
    if (kept) continue;
    plan.emplace(slot.name, override_it != options.layer_specs.end() ? *override_it->second : options.spec);
  }
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
        weights.push_back(ops.at(n)->dequantized_weight());
        biases.push_back(ops.at(n)->bias());
      }
      std::vector<awq::ScaleSearch> r;
      try {
        r = awq::search_group_scales(weights, biases, stats.at(group.front()), first->second,
                                     options.calibration.grid);
      } catch (const InvalidArgument& e) {  // e.g. a non-finite weight: name the group's layers
        raise<InvalidArgument>("layers '{}': {}", fmt::join(group, "', '"), e.what());
      }
      for (size_t i = 0; i < group.size(); ++i) awq_grouped.emplace(group[i], std::move(r[i]));
    }
  }

  for (const LinearSlot& slot : model.linear_layers()) {
    Linear& op = **slot.op;
    LayerQuantization lq;
    lq.name = slot.name;
    lq.out_features = op.out_features();
    lq.in_features = op.in_features();
    lq.bytes_before = op.weight_bytes();
    if (const auto it = plan.find(slot.name); it != plan.end()) {
      const QuantSpec& spec = it->second;
      try {
        if (spec.awq) {
          const auto grouped = awq_grouped.find(slot.name);
          awq::ScaleSearch r = grouped != awq_grouped.end()
                                   ? std::move(grouped->second)
                                   : awq::search_scales(op.dequantized_weight(), op.bias(), stats.at(slot.name), spec,
                                                        options.calibration.grid);
          lq.awq_alpha = r.alpha;
          lq.awq_duo = r.duo;
          lq.awq_rtn_error = r.rtn_error;
          lq.awq_error = r.error;
          *slot.op = std::move(r.op);
        } else {
          *slot.op = quantize_linear(op.dequantized_weight(), op.bias(), spec);
        }
      } catch (const InvalidArgument& e) {  // e.g. a non-finite weight: name the layer
        raise<InvalidArgument>("layer '{}' ({}): {}", slot.name, spec.name(), e.what());
      }
      lq.quantized = true;
      report.quantized_bytes_before += lq.bytes_before;
      report.quantized_bytes_after += (*slot.op)->weight_bytes();
      const Tensor b = (*slot.op)->bias();
      report.quantized_matrix_bytes += (*slot.op)->weight_bytes() - (b.defined() ? b.nbytes() : 0);
      report.quantized_elements += lq.out_features * lq.in_features;
    }
    lq.format = (*slot.op)->format();
    lq.bytes_after = (*slot.op)->weight_bytes();
    if (slot.is_lm_head && lq.quantized && model.config().tie_word_embeddings)
      warn(fmt::format(
          "QuantizeOptions::quantize_lm_head: this model ties lm_head to the token embedding, which the input side "
          "still needs as it is; the quantized lm_head ({:.2f} MiB) is a second copy, so the model grows by that "
          "much",
          double(lq.bytes_after) / (1024.0 * 1024.0)));
    report.layers.push_back(std::move(lq));
  }
  // What stays unquantized is held in its on-disk dtype (BF16/F16 checkpoints:
  // half the bytes of F32, the same values); the kept layers' report follows.
  if (report.quantized_elements > 0) hold_unquantized_and_report(model, report);
  for (size_t i = 0; i < keep.size(); ++i) {
    if (pattern_used[i]) continue;
    report.unmatched_keep_patterns.push_back(options.keep_patterns[i]);
    const std::vector<LinearSlot> slots = model.linear_layers();
    warn(fmt::format(
        "QuantizeOptions::keep_patterns '{}' matches no linear layer, so it keeps nothing (layer names look like '{}')",
        options.keep_patterns[i], slots.empty() ? std::string("?") : slots.front().name));
  }
  report.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return report;
}

std::unique_ptr<Model> load_quantized(const std::filesystem::path& dir, const QuantizeOptions& options,
                                      const ExecContext& ctx, QuantizeReport* report) {
  // Quantization runs on the host (round-to-nearest over the FP32 weights);
  // a model for another device is built on the CPU, quantized, then moved.
  ExecContext host = ctx;
  host.device = Device::CPU;
  auto model = Model::load(dir, host);
  QuantizeReport r = quantize_model(*model, options);
  if (ctx.device != Device::CPU) model->to_device(ctx);
  if (report) *report = std::move(r);
  return model;
}

std::unique_ptr<Model> LLMOptimizer::load_model(const std::filesystem::path& dir) const {
  if (!config_.quantization) return Model::load(dir, config_.context);
  return load_quantized(dir, *config_.quantization, config_.context, &report_);
}

}  // namespace kq
