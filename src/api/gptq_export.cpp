// `kq quantize --format gptq`: a quantized model written as an AutoGPTQ v1 checkpoint (see kq/gptq_export.hpp).
#include "kq/gptq_export.hpp"

#include <algorithm>
#include <cmath>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "api/save_common.hpp"
#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "io/json_strict.hpp"
#include "io/safetensors.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"
#include "kq/warning.hpp"
#include "models/weights.hpp"
#include "quant/gptq_pack.hpp"

namespace kq {
namespace {

namespace fs = std::filesystem;

/// `t` as FP16: F16 as it is; F32 / BF16 rounded to nearest even (the values AutoGPTQ's fp16 model holds);
/// other dtypes (integer buffers) unchanged. Throws InvalidArgument naming the tensor when a finite value
/// overflows FP16.
Tensor to_f16(const Tensor& t, const std::string& name) {
  if (t.dtype() == DType::F16 || (t.dtype() != DType::F32 && t.dtype() != DType::BF16)) return t;
  const Tensor f = t.dtype() == DType::F32 ? t : t.to_f32();
  Tensor h = Tensor::empty(DType::F16, t.shape());
  const float* src = f.data<float>();
  uint16_t* dst = h.mutable_data<uint16_t>();
  const int64_t n = t.numel();
  for (int64_t i = 0; i < n; ++i) {
    dst[i] = f32_to_f16(src[i]);
    if (std::isfinite(src[i]) && !std::isfinite(f16_to_f32(dst[i])))
      raise<InvalidArgument>("save_gptq_model: tensor '{}' holds {} at index {}, beyond FP16's range (largest 65504): "
                             "a GPTQ checkpoint is FP16, so this model cannot be written as one",
                             name, src[i], i);
  }
  return h;
}

}  // namespace

namespace detail {

std::string gptq_quantizer_tag() { return "kq:" + version(); }

bool is_kq_gptq_quantization_config(const nlohmann::json& q) {
  if (!q.is_object() || !q.contains("quant_method") || q["quant_method"] != "gptq") return false;
  if (!q.contains("meta") || !q["meta"].is_object() || !q["meta"].contains("quantizer")) return false;
  const nlohmann::json& who = q["meta"]["quantizer"];
  return who.is_array() && !who.empty() && who[0].is_string() && who[0].get<std::string>().starts_with("kq:");
}

}  // namespace detail

const char* save_format_name(SaveFormat f) { return f == SaveFormat::Gptq ? "gptq" : "kq"; }

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
  check_gptq_options(options);
  model.check_linear_layers("save_gptq_model");
  const fs::path src = model.source_dir();
  if (src.empty())
    raise<InvalidArgument>("save_gptq_model: the model has no source folder (random weights cannot be saved)");
  check_gptq_model_config(model.config(), src);
  detail::check_source_folder_still_there(src, "save_gptq_model");
  check_quantized_output(out, src, overwrite);
  check_quantized_side_files(src, model.config().vocab_size);
  detail::check_options_describe_model(model, options, "save_gptq_model");

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
    if (const Tensor bias = op->bias(); bias.defined()) tensors.emplace(prefix + ".bias", to_f16(bias, prefix + ".bias"));
    replaced.insert(prefix + ".");
  }
  if (replaced.empty())
    raise<InvalidArgument>("save_gptq_model: no layer of the model is quantized; nothing to save");

  // The source's other tensors the model uses, as FP16 (unused ones are left out, as save_quantized_model does).
  const std::set<std::string> unused(model.unused_source_tensors().begin(), model.unused_source_tensors().end());
  for (const std::string& name : store.names()) {
    if (unused.count(name) || tensors.count(name)) continue;
    if (!models::fused_parts(model.config(), name).empty())
      raise<InvalidArgument>("save_gptq_model: tensor '{}' of '{}' is a fused layer, which kq does not write as GPTQ; "
                             "use the kq format",
                             name, src.string());
    const bool superseded = std::any_of(replaced.begin(), replaced.end(),
                                        [&](const std::string& p) { return name.starts_with(p); });
    if (!superseded) tensors.emplace(name, to_f16(store.get(name), name));
  }
  if (flushed > 0)
    warn(fmt::format("GPTQ format: {} nonzero scale{} below FP16's smallest subnormal (2^-24) became 0 (first in "
                     "layer '{}'): {} group{} decode{} to zeros",
                     flushed, flushed == 1 ? "" : "s", first_flushed, flushed == 1 ? "its" : "their",
                     flushed == 1 ? "" : "s", flushed == 1 ? "s" : ""));

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
  qc["meta"] = {{"quantizer", nlohmann::json::array({detail::gptq_quantizer_tag()})},
                {"kq_mode", options.spec.name()},
                {"method", "round-to-nearest"}};
  config["quantization_config"] = qc;
  config["torch_dtype"] = "float16";
  if (config.contains("dtype")) config["dtype"] = "float16";

  io::AtomicDir dir(out, overwrite);
  dir.write([&] {  // errors (e.g. a full disk) name `out`, not the staging folder
    write_safetensors(dir.file("model.safetensors"), tensors, {{"format", "pt"}});
    io::write_file_atomic(dir.file("config.json"), io::json_text(config, 2) + "\n");
    io::write_file_atomic(dir.file(detail::kGptqConfigFile), io::json_text(qc, 2) + "\n");
    detail::copy_side_files(dir, src);
  });
  dir.commit();
}

}  // namespace kq
