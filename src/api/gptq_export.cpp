// `kq quantize --format gptq`: a quantized model written as an AutoGPTQ v1 checkpoint (see kq/gptq_export.hpp).
#include "kq/gptq_export.hpp"

#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "api/hub_export.hpp"
#include "api/save_common.hpp"
#include "io/json_strict.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"
#include "models/weights.hpp"
#include "quant/gptq_pack.hpp"

namespace kq {

namespace fs = std::filesystem;

const char* save_format_name(SaveFormat f) {
  return f == SaveFormat::Gptq ? "gptq" : f == SaveFormat::Awq ? "awq" : "kq";
}

void check_gptq_options(const QuantizeOptions& options) {
  const QuantSpec& s = options.spec;
  const std::string mode = s.name();  // throws for an invalid spec
  if (!options.layer_specs.empty())
    raise<InvalidArgument>("GPTQ format: QuantizeOptions::layer_specs (an adaptive plan, one format per layer) cannot "
                           "be written as GPTQ, which has one integer 4-bit format for all quantized layers; use "
                           "an int4-gB or int4-gB-asym mode (B = 32..256, e.g. int4-g128), or the kq format");
  if (s.format != PrecisionFormat::INT4 || s.awq)
    raise<InvalidArgument>(
        "GPTQ format: mode {} cannot be written as GPTQ{}; GPTQ stores integer 4-bit groups with a scale and zero "
        "point per group: use an int4-gB or int4-gB-asym mode (B = 32..256, e.g. int4-g128), or the kq format",
        mode,
        s.awq ? std::string(" (AWQ's per-input-channel scales have no place in GPTQ's format)")
              : fmt::format(" (its weights are {}, not integer INT4 groups)", precision_format_name(s.format)));
  if (options.quantize_lm_head)
    raise<InvalidArgument>("GPTQ format: QuantizeOptions::quantize_lm_head cannot be written as GPTQ v1: AutoGPTQ keeps "
                           "the lm_head unquantized, and transformers' loaders quantize the layers of the transformer "
                           "blocks only; leave the lm_head unquantized, or use the kq format");
  if (!options.keep_patterns.empty())
    raise<InvalidArgument>("GPTQ format: QuantizeOptions::keep_patterns ('{}'{}) cannot be written as GPTQ: its config "
                           "has no list of unquantized layers (no modules_to_not_convert), and transformers' and "
                           "optimum's loaders replace every linear layer of the blocks with a quantized one; quantize "
                           "them all, or use the kq format",
                           options.keep_patterns.front(), options.keep_patterns.size() > 1 ? ", ..." : "");
}

void check_gptq_model_config(const ModelConfig& c, const fs::path& src) {
  if (c.arch == Arch::Phi3)
    raise<InvalidArgument>("GPTQ format: '{}' is a Phi-3 model (model_type phi3), whose checkpoints store q/k/v and "
                           "gate/up as fused layers; kq does not write them fused as GPTQ: use the kq format",
                           src.string());
  const auto need8 = [&](const char* what, int64_t v) {
    if (v % 8 != 0)
      raise<InvalidArgument>("GPTQ format: '{}': {} is {}, not a multiple of 8; GPTQ packs eight 4-bit codes per "
                             "int32 along each layer's input and output channels, so this model cannot be written "
                             "as GPTQ: use the kq format",
                             src.string(), what, v);
  };
  need8("hidden_size", c.hidden_size);
  need8("intermediate_size", c.intermediate_size);
  need8("num_attention_heads * head_dim", c.num_heads * c.head_dim);
  need8("num_key_value_heads * head_dim", c.num_kv_heads * c.head_dim);
}

void save_gptq_model(Model& model, const QuantizeOptions& options, const fs::path& out, bool overwrite) {
  constexpr const char* kWho = "save_gptq_model";
  check_gptq_options(options);
  const fs::path src = detail::check_hub_export(model, options, out, overwrite, kWho, check_gptq_model_config);

  const TensorStore store = TensorStore::open_dir(src);
  nlohmann::json config = io::load_hf_json_file(src / "config.json");
  const bool bare_gpt2 = model.config().arch == Arch::GPT2 && !store.contains("transformer.wte.weight");

  std::map<std::string, Tensor> tensors;
  std::set<std::string> replaced;  // "<prefix>." of the quantized layers: their source tensors are superseded
  int64_t flushed = 0;
  std::string first_flushed;
  for (const LinearSlot& slot : model.linear_layers()) {
    const auto* op = dynamic_cast<const QuantizedLinear*>(slot.op->get());
    if (!op) continue;  // the lm_head (kept): copied below as the source has it
    const std::string prefix = detail::source_file_prefix(slot.name, bare_gpt2);
    GptqScaleRounding rounding;
    GptqV1Tensors t = pack_gptq_v1(op->packed(), slot.name, &rounding);
    if (rounding.flushed > 0 && first_flushed.empty()) first_flushed = slot.name;
    flushed += rounding.flushed;
    tensors.emplace(prefix + ".qweight", std::move(t.qweight));
    tensors.emplace(prefix + ".qzeros", std::move(t.qzeros));
    tensors.emplace(prefix + ".scales", std::move(t.scales));
    tensors.emplace(prefix + ".g_idx", std::move(t.g_idx));
    if (const Tensor bias = op->bias(); bias.defined())
      tensors.emplace(prefix + ".bias", detail::hub_f16(bias, prefix + ".bias", kWho, "GPTQ"));
    replaced.insert(prefix + ".");
  }
  if (replaced.empty())
    raise<InvalidArgument>("save_gptq_model: no layer of the model is quantized; nothing to save");
  // The source's other tensors the model uses, as FP16.
  detail::add_source_tensors(model, store, src, replaced, tensors, kWho, "GPTQ");
  detail::warn_flushed_scales("GPTQ", flushed, first_flushed);

  nlohmann::json qc = nlohmann::json::object();
  qc["quant_method"] = "gptq";
  qc["bits"] = 4;
  qc["group_size"] = options.spec.block_size;
  qc["desc_act"] = false;
  qc["static_groups"] = false;
  qc["sym"] = options.spec.symmetric;
  qc["checkpoint_format"] = "gptq";
  qc["lm_head"] = false;
  qc["model_file_base_name"] = "model";
  qc["meta"] = {{"quantizer", nlohmann::json::array({detail::hub_quantizer_tag()})},
                {"kq_mode", options.spec.name()},
                {"method", "round-to-nearest"}};
  config["quantization_config"] = qc;
  config["torch_dtype"] = "float16";
  if (config.contains("dtype")) config["dtype"] = "float16";
  detail::write_hub_folder(out, overwrite, tensors, config, detail::kGptqConfigFile, qc, src);
}

}  // namespace kq
