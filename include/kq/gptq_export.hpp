#pragma once
// Writing a quantized model as an AutoGPTQ (GPTQ v1) checkpoint, the "-GPTQ"
// folder format of the Hugging Face Hub that vLLM, transformers (with
// GPTQModel / optimum), TGI and exllama load: `kq quantize --format gptq`.
#include <filesystem>

#include "kq/config.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {

/// The folder layouts kq quantize writes (its --format option).
enum class SaveFormat {
  Kq,    ///< KernelQuant's own folder (save_quantized_model), every mode; the default
  Gptq,  ///< AutoGPTQ v1 (save_gptq_model): round-to-nearest INT4 groups only
  Awq,   ///< AutoAWQ GEMM (save_awq_model, kq/awq_export.hpp): AWQ modes only
};

/// "kq", "gptq" or "awq", as kq quantize --format spells them.
const char* save_format_name(SaveFormat f);

/// The checks save_gptq_model makes of `options` before anything is read, for
/// callers that want to fail before loading and quantizing (`kq quantize
/// --format gptq` does). Exportable: options.spec an integer INT4 group mode
/// without AWQ (int4-gB symmetric or int4-gB-asym, B = 32..256; the compute
/// dtype is not stored), no layer_specs (an adaptive plan: GPTQ has one
/// format for all layers), no keep_patterns (a GPTQ config cannot list
/// layers of the blocks left unquantized: transformers' and optimum's
/// loaders would replace every linear layer of the blocks by a quantized one)
/// and quantize_lm_head false (AutoGPTQ v1 keeps the lm_head unquantized).
/// Throws InvalidArgument naming the option and the mode (NF4, FP4, INT8, FP8
/// and AWQ modes: "AWQ's per-input-channel scales have no place in GPTQ's format").
void check_gptq_options(const QuantizeOptions& options);

/// The checks save_gptq_model makes of the model's architecture and sizes,
/// from its config alone (`src` names the folder in messages): GPT-2 and the
/// Llama family (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3 text);
/// Phi-3 is refused (its checkpoints store q/k/v and gate/up fused, which the
/// export does not re-fuse); hidden_size, intermediate_size and the attention
/// widths (heads · head_dim, kv heads · head_dim) must be multiples of 8
/// (GPTQ packs eight 4-bit codes per int32 along both K and N). Throws
/// InvalidArgument naming the folder and the config value.
void check_gptq_model_config(const ModelConfig& config, const std::filesystem::path& src);

/// Writes `model` (loaded from a folder and quantized with `options`, which
/// check_gptq_options accepts) at `out` as an AutoGPTQ checkpoint,
/// checkpoint_format "gptq" (v1), as AutoGPTQ's QuantLinear.pack lays it out:
///   config.json          the source config with "torch_dtype" (and "dtype" when present) "float16" and
///                        "quantization_config": {"quant_method": "gptq", "bits": 4, "group_size": B,
///                        "desc_act": false, "static_groups": false, "sym": <spec symmetric>,
///                        "checkpoint_format": "gptq", "lm_head": false, "model_file_base_name": "model",
///                        "meta": {"quantizer": ["kq:<version>"]}}
///   quantize_config.json the same object (AutoGPTQ's own loader and older tools read this file)
///   model.safetensors    per quantized layer W [N, K] (source tensor-name prefix P, GPT-2's Conv1D included:
///                        AutoGPTQ transposes it to [N, K] before packing, as kq holds it):
///                          P.qweight I32 [K/8, N]  nibble i (bits 4i..4i+3) of (r, n) = code of W[n, 8r + i]
///                          P.qzeros  I32 [G, N/8]  nibble i of (g, c) = zero point of (g, 8c + i) minus 1
///                                                  (symmetric modes: zero point 8, stored 7)
///                          P.scales  F16 [G, N]    kq's F32 group scales rounded to FP16 (to nearest even,
///                                                  subnormals kept, as torch's .half()); G = ceil(K / B)
///                          P.g_idx   I32 [K]       k / B
///                          P.bias    F16 [N]       when the layer has one
///                        every other tensor the model uses (embeddings, norms, the lm_head, ...) under its
///                        source name, as FP16 (F32 / BF16 converted, to nearest even; other dtypes as they are)
///   side files           copied as save_quantized_model copies them
/// Writing is atomic, as save_quantized_model's. Model::load(out) reads the
/// folder back (kq's GPTQ importer) with every layer's codes and zero points
/// unchanged and its scales the FP16-rounded ones. Throws InvalidArgument for
/// what check_gptq_options / check_gptq_model_config refuse, options that do
/// not describe the model (as save_quantized_model), a layer whose N or K is
/// not a multiple of 8, an asymmetric group with zero point 0 (GPTQ v1 stores
/// zero − 1, and AutoGPTQ's −1 corrupts the packed word: named, with the
/// symmetric mode to use instead), a scale or a tensor value that overflows
/// FP16 (above 65504 after rounding: named), and as save_quantized_model for
/// the model, `out` and the side files (before anything is written); Error on
/// I/O failure. A nonzero scale that FP16 flushes to zero (below 2^-25) is
/// warned about (kq::warn, the count and the first layer): its group then decodes to zeros.
void save_gptq_model(Model& model, const QuantizeOptions& options, const std::filesystem::path& out,
                     bool overwrite = false);

}  // namespace kq
