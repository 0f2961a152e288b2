// `kq quantize --format awq`: an AWQ-quantized model written as an AutoAWQ GEMM checkpoint, its input scales
// folded into the operators before the layers (see kq/awq_export.hpp).
#include "kq/awq_export.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/hub_export.hpp"
#include "api/save_common.hpp"
#include "io/json_strict.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "models/weights.hpp"
#include "quant/awq_pack.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;

constexpr const char* kWho = "save_awq_model";

/// The AWQ op the model holds for `name`. Throws InvalidArgument naming the layer when it is anything else.
const AwqLinear& awq_layer(const std::map<std::string, const Linear*>& ops, const std::string& name) {
  const auto it = ops.find(name);
  if (it == ops.end())
    raise<InvalidArgument>("{}: the model has no linear layer '{}' (an AutoAWQ Llama-family layer)", kWho, name);
  const auto* op = dynamic_cast<const AwqLinear*>(it->second);
  if (!op)
    raise<InvalidArgument>("{}: layer '{}' is {}, not an AWQ layer: quantize every linear layer of the blocks "
                           "with the AWQ mode",
                           kWho, name, it->second->format());
  return *op;
}

/// s of `a`, which the layers `b` read with it (one input, one norm): throws InvalidArgument unless equal.
std::span<const float> shared_scales(const AwqLinear& a, const std::string& a_name, const AwqLinear& b,
                                     const std::string& b_name) {
  const std::span<const float> sa(a.scales().data<float>(), size_t(a.scales().numel()));
  const std::span<const float> sb(b.scales().data<float>(), size_t(b.scales().numel()));
  if (!std::equal(sa.begin(), sa.end(), sb.begin(), sb.end()))
    raise<InvalidArgument>("{}: layers '{}' and '{}' read the same normed input but hold different AWQ scales, which "
                           "cannot both be folded into that norm (kq's AWQ searches one s for them when they share "
                           "the AWQ mode)",
                           kWho, a_name, b_name);
  return sa;
}

/// The RMSNorm gain `name` of `store` with 1/s folded in (w / s, or (1 + w) / s − 1 for a (1 + w) gain), as F32.
Tensor folded_norm(const TensorStore& store, const std::string& name, std::span<const float> s, bool offset) {
  if (!store.contains(name))
    raise<InvalidArgument>("{}: tensor '{}' is missing from the source folder: the AWQ scales of the layers it "
                           "norms are folded into it",
                           kWho, name);
  const Tensor w = store.get(name).to_f32();
  if (w.shape() != Shape{int64_t(s.size())})
    raise<InvalidArgument>("{}: tensor '{}' is {}, not [{}] (the K of the layers it norms)", kWho, name,
                           shape_str(w.shape()), s.size());
  Tensor out = Tensor::empty(DType::F32, w.shape());
  const float* src = w.data<float>();
  float* dst = out.mutable_data<float>();
  for (size_t k = 0; k < s.size(); ++k)
    dst[k] = offset ? float((1.0 + double(src[k])) / double(s[k]) - 1.0) : float(double(src[k]) / double(s[k]));
  return out;
}

/// v_proj's row divisors folding o_proj's s: v row (kv head h, dimension d) divided by the s of o's input
/// channels (query head of h, d), which must be equal over the query heads sharing kv head h.
std::vector<float> v_row_divisors(const ModelConfig& c, std::span<const float> s_o, const std::string& o_name) {
  const int64_t H = c.num_heads, KV = c.num_kv_heads, D = c.head_dim, rep = H / KV;
  std::vector<float> d(size_t(KV * D));
  for (int64_t h = 0; h < KV; ++h)
    for (int64_t j = 0; j < D; ++j) {
      const float v = s_o[size_t(h * rep * D + j)];
      for (int64_t r = 1; r < rep; ++r)
        if (s_o[size_t((h * rep + r) * D + j)] != v)
          raise<InvalidArgument>(
              "{}: the AWQ scales of '{}' differ over the {} query heads sharing kv head {} (input channels {} and "
              "{}: {} and {}), so they cannot be folded into v_proj's output rows: quantize with "
              "QuantizeOptions::awq_unit_scale_layers = awq_unit_scale_layers(config) (kq quantize --format awq "
              "does), which fixes o_proj's s at 1 as AutoAWQ does for grouped-query attention",
              kWho, o_name, rep, h, h * rep * D + j, (h * rep + r) * D + j, v, s_o[size_t((h * rep + r) * D + j)]);
      d[size_t(h * D + j)] = v;
    }
  return d;
}

}  // namespace

void check_awq_options(const QuantizeOptions& options) {
  const QuantSpec& s = options.spec;
  const std::string mode = s.name();  // throws for an invalid spec
  if (!options.layer_specs.empty())
    raise<InvalidArgument>("AutoAWQ format: QuantizeOptions::layer_specs (an adaptive plan, one format per layer) "
                           "cannot be written as AutoAWQ, which has one AWQ 4-bit format for all quantized layers; "
                           "use an AWQ mode (awq, awq-gB, awq-gB-sym), or the kq format");
  if (!s.awq || s.format != PrecisionFormat::INT4)
    raise<InvalidArgument>("AutoAWQ format: mode {} cannot be written as AutoAWQ: its weights have no AWQ scales to "
                           "fold (an AutoAWQ checkpoint holds AWQ's INT4 groups); use an AWQ mode (awq, awq-gB, "
                           "awq-gB-sym), --format gptq for int4-gB, or the kq format",
                           mode);
  if (options.quantize_lm_head)
    raise<InvalidArgument>("AutoAWQ format: QuantizeOptions::quantize_lm_head cannot be written as AutoAWQ: AutoAWQ "
                           "keeps the lm_head unquantized, and no operator before it takes its s; leave the lm_head "
                           "unquantized, or use the kq format");
  if (!options.keep_patterns.empty())
    raise<InvalidArgument>("AutoAWQ format: QuantizeOptions::keep_patterns ('{}'{}) cannot be written as AutoAWQ: "
                           "the scales of the layers around a kept layer fold into it or it into them, and vLLM's "
                           "and transformers' AWQ loaders replace every linear layer of the blocks with a quantized "
                           "one; quantize them all, or use the kq format",
                           options.keep_patterns.front(), options.keep_patterns.size() > 1 ? ", ..." : "");
}

void check_awq_model_config(const ModelConfig& c, const fs::path& src, int64_t group) {
  if (group < 1) raise<InvalidArgument>("AutoAWQ format: group size {} must be positive", group);
  if (c.arch == Arch::GPT2)
    raise<InvalidArgument>("AutoAWQ format: '{}' is a GPT-2 model: its MLP's c_proj reads the output of a GELU, "
                           "through which no AWQ scale folds exactly, and AutoAWQ has no GPT-2 model; use the kq "
                           "format (or --format gptq with int4-gB)",
                           src.string());
  if (c.arch == Arch::Phi3)
    raise<InvalidArgument>("AutoAWQ format: '{}' is a Phi-3 model (model_type phi3), whose checkpoints store q/k/v "
                           "and gate/up as fused layers; kq does not write them fused as AutoAWQ: use the kq format",
                           src.string());
  if (c.num_kv_heads < 1 || c.num_heads % c.num_kv_heads != 0)
    raise<InvalidArgument>("AutoAWQ format: '{}': num_attention_heads {} is not a multiple of num_key_value_heads {}",
                           src.string(), c.num_heads, c.num_kv_heads);
  const auto need = [&](const char* what, int64_t v, int64_t m, const char* why) {
    if (v % m != 0)
      raise<InvalidArgument>("AutoAWQ format: '{}': {} is {}, not a multiple of {}; {}, so this model cannot be "
                             "written as AutoAWQ{}: use the kq format",
                             src.string(), what, v, m, why, m == 8 ? "" : " with this group size");
  };
  constexpr const char* kPack = "AutoAWQ packs eight 4-bit codes and zero points per int32 along the output channels";
  constexpr const char* kGroups = "AutoAWQ's layers hold whole groups along their input channels (K / group_size)";
  need("hidden_size", c.hidden_size, 8, kPack);
  need("intermediate_size", c.intermediate_size, 8, kPack);
  need("num_attention_heads * head_dim", c.num_heads * c.head_dim, 8, kPack);
  need("num_key_value_heads * head_dim", c.num_kv_heads * c.head_dim, 8, kPack);
  need("hidden_size", c.hidden_size, group, kGroups);
  need("intermediate_size", c.intermediate_size, group, kGroups);
  need("num_attention_heads * head_dim", c.num_heads * c.head_dim, group, kGroups);
}

std::vector<std::string> awq_unit_scale_layers(const ModelConfig& c) {
  std::vector<std::string> names;
  if (c.arch == Arch::GPT2 || c.num_kv_heads >= c.num_heads) return names;
  for (int64_t l = 0; l < c.num_layers; ++l) names.push_back(fmt::format("model.layers.{}.self_attn.o_proj", l));
  return names;
}

void save_awq_model(Model& model, const QuantizeOptions& options, const fs::path& out, bool overwrite) {
  check_awq_options(options);
  const fs::path src = detail::check_hub_export(
      model, options, out, overwrite, kWho,
      [&](const ModelConfig& c, const fs::path& from) { check_awq_model_config(c, from, options.spec.block_size); });
  const ModelConfig& c = model.config();
  const TensorStore store = TensorStore::open_dir(src);
  nlohmann::json config = io::load_hf_json_file(src / "config.json");

  std::map<std::string, const Linear*> ops;
  for (const LinearSlot& slot : model.linear_layers()) ops.emplace(slot.name, slot.op->get());

  // The folds, layer by layer: norms (as F32 here, FP16 below) and the row divisors of up_proj and v_proj.
  std::map<std::string, Tensor> tensors;
  std::map<std::string, std::vector<float>> divisors;
  for (int64_t l = 0; l < c.num_layers; ++l) {
    const std::string p = fmt::format("model.layers.{}.", l);
    const auto layer = [&](const char* m) -> const AwqLinear& { return awq_layer(ops, p + m); };
    const std::span<const float> s_attn =
        shared_scales(layer("self_attn.q_proj"), p + "self_attn.q_proj", layer("self_attn.k_proj"), p + "self_attn.k_proj");
    (void)shared_scales(layer("self_attn.q_proj"), p + "self_attn.q_proj", layer("self_attn.v_proj"), p + "self_attn.v_proj");
    const std::span<const float> s_mlp =
        shared_scales(layer("mlp.gate_proj"), p + "mlp.gate_proj", layer("mlp.up_proj"), p + "mlp.up_proj");
    const std::string attn_norm = p + "input_layernorm.weight";
    const std::string mlp_norm = p + (c.post_norms ? "pre_feedforward_layernorm.weight" : "post_attention_layernorm.weight");
    tensors.emplace(attn_norm, detail::hub_f16(folded_norm(store, attn_norm, s_attn, c.norm_offset), attn_norm, kWho, "AutoAWQ"));
    tensors.emplace(mlp_norm, detail::hub_f16(folded_norm(store, mlp_norm, s_mlp, c.norm_offset), mlp_norm, kWho, "AutoAWQ"));
    const Tensor& s_down = layer("mlp.down_proj").scales();
    divisors[p + "mlp.up_proj"].assign(s_down.data<float>(), s_down.data<float>() + s_down.numel());
    const Tensor& s_o = layer("self_attn.o_proj").scales();
    divisors[p + "self_attn.v_proj"] =
        v_row_divisors(c, std::span<const float>(s_o.data<float>(), size_t(s_o.numel())), p + "self_attn.o_proj");
  }

  std::set<std::string> replaced;  // "<prefix>." of the quantized layers: their source tensors are superseded
  int64_t flushed = 0;
  std::string first_flushed;
  for (const LinearSlot& slot : model.linear_layers()) {
    if (slot.is_lm_head && !dynamic_cast<const AwqLinear*>(slot.op->get())) continue;  // kept: copied below
    const AwqLinear& op = awq_layer(ops, slot.name);
    const auto* inner = dynamic_cast<const QuantizedLinear*>(&op.inner());
    if (!inner) raise<InvalidArgument>("{}: layer '{}' holds no packed INT4 weight", kWho, slot.name);
    const std::string prefix = detail::source_file_prefix(slot.name, false);
    const auto d = divisors.find(slot.name);
    const std::span<const float> div = d == divisors.end() ? std::span<const float>() : std::span<const float>(d->second);
    GptqScaleRounding rounding;
    AwqGemmTensors t = pack_awq_gemm(inner->packed(), slot.name, div, &rounding);
    if (rounding.flushed > 0 && first_flushed.empty()) first_flushed = slot.name;
    flushed += rounding.flushed;
    tensors.emplace(prefix + ".qweight", std::move(t.qweight));
    tensors.emplace(prefix + ".qzeros", std::move(t.qzeros));
    tensors.emplace(prefix + ".scales", std::move(t.scales));
    if (Tensor bias = op.bias(); bias.defined()) {
      bias = bias.to_f32().clone();
      float* b = bias.mutable_data<float>();
      for (size_t n = 0; n < div.size(); ++n) b[n] = b[n] / div[n];
      tensors.emplace(prefix + ".bias", detail::hub_f16(bias, prefix + ".bias", kWho, "AutoAWQ"));
    }
    replaced.insert(prefix + ".");
  }
  detail::add_source_tensors(model, store, src, replaced, tensors, kWho, "AutoAWQ");
  detail::warn_flushed_scales("AutoAWQ", flushed, first_flushed);

  nlohmann::json qc = nlohmann::json::object();
  qc["quant_method"] = "awq";
  qc["bits"] = 4;
  qc["group_size"] = options.spec.block_size;
  qc["zero_point"] = true;
  qc["version"] = "gemm";
  qc["modules_to_not_convert"] = nullptr;
  qc["meta"] = {{"quantizer", nlohmann::json::array({detail::hub_quantizer_tag()})},
                {"kq_mode", options.spec.name()},
                {"method", "awq, scales folded into the preceding norms and linear layers"}};
  config["quantization_config"] = qc;
  config["torch_dtype"] = "float16";
  if (config.contains("dtype")) config["dtype"] = "float16";
  detail::write_hub_folder(out, overwrite, tensors, config, nullptr, qc, src);
}

}  // namespace kq
