#pragma once
// Writing a model quantized with an AWQ mode as an AutoAWQ checkpoint (version
// "gemm", the "-AWQ" folder format of the Hugging Face Hub that vLLM and
// transformers load): `kq quantize --mode awq --format awq`.
//
// kq's AWQ op divides its input by the per-input-channel scales s at run time
// (kernels/awq_linear.hpp); an AutoAWQ checkpoint has no s: AWQ (Lin et al.,
// MLSys 2024) and AutoAWQ's apply_scale fold 1/s into the operator before the
// layer. save_awq_model folds them so, per decoder layer:
//   q/k/v_proj (one s)  into input_layernorm.weight:  w'[k] = w[k] / s[k]   (Gemma's (1 + w) gain:
//                       w' = (1 + w) / s − 1)
//   gate/up_proj (one s) into the MLP's input norm (post_attention_layernorm; Gemma 2 / 3:
//                       pre_feedforward_layernorm), likewise
//   down_proj           into up_proj's output rows: row n's group scales (and bias) divided by s[n]
//                       (act(gate) · up is linear in up's rows; codes and zero points unchanged)
//   o_proj              into v_proj's output rows: o's input channel j (query head h, dimension d) is v's
//                       row (kv head of h, d); exact only when s is equal over the query heads sharing a kv
//                       head, which kq makes so for grouped-query attention by fixing o_proj's s at 1
//                       (awq_unit_scale_layers), as AutoAWQ leaves o_proj unscaled when v and o differ in shape.
// Each fold is exact in real arithmetic; the file rounds the folded norms and scales to FP16.
#include <filesystem>
#include <string>
#include <vector>

#include "kq/config.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {

/// The checks save_awq_model makes of `options` before anything is read, for
/// callers that want to fail before loading and quantizing (`kq quantize
/// --format awq` does). Exportable: options.spec an AWQ mode (awq-gB or
/// awq-gB-sym, B = 32..256; the compute dtype is not stored; a symmetric mode is
/// written with every zero point 8, which holds (q − 8) · s exactly), no
/// layer_specs (an adaptive plan: AutoAWQ has one format for all layers), no
/// keep_patterns (a kept layer has no quantized neighbour to fold its s into
/// and AutoAWQ's loaders quantize every linear layer of the blocks) and
/// quantize_lm_head false (AutoAWQ keeps the lm_head unquantized). Throws
/// InvalidArgument naming the option and the mode ("AutoAWQ format: mode int4-g128
/// ...: its weights have no AWQ scales ...").
void check_awq_options(const QuantizeOptions& options);

/// The checks save_awq_model makes of the model's architecture and sizes, from
/// its config alone (`src` names the folder in messages), for a group size
/// `group` (QuantSpec::block_size): the Llama family whose norms and layers
/// fold 1/s exactly (Llama, Mistral, Qwen2, Qwen3, Gemma, Gemma 2, Gemma 3
/// text); GPT-2 is refused (its MLP's c_proj follows a GELU, through which no s
/// folds, and AutoAWQ has no GPT-2 model), Phi-3 too (its checkpoints fuse
/// q/k/v and gate/up, which the export does not re-fuse). hidden_size,
/// intermediate_size and the attention width (heads · head_dim), the K of the
/// layers, must be multiples of `group` (AutoAWQ's layers hold K / group_size
/// whole groups), and every N (those and kv heads · head_dim) a multiple of 8.
/// Throws InvalidArgument naming the folder and the config value.
void check_awq_model_config(const ModelConfig& config, const std::filesystem::path& src, int64_t group);

/// The linear layers whose AWQ scales cannot be folded exactly for any s, so
/// that `kq quantize --format awq` fixes their s at 1
/// (QuantizeOptions::awq_unit_scale_layers): every layer's self_attn.o_proj
/// when num_key_value_heads < num_attention_heads (grouped-query attention);
/// none otherwise. Names as LinearSlot::name ("model.layers.0.self_attn.o_proj").
std::vector<std::string> awq_unit_scale_layers(const ModelConfig& config);

/// Writes `model` (loaded from a folder and quantized with `options`, which
/// check_awq_options accepts; for a grouped-query model, with
/// options.awq_unit_scale_layers holding awq_unit_scale_layers(config), or the
/// o_proj scales do not fold) at `out` as an AutoAWQ GEMM checkpoint:
///   config.json        the source config with "torch_dtype" (and "dtype" when present) "float16" and
///                      "quantization_config": {"quant_method": "awq", "bits": 4, "group_size": B,
///                      "zero_point": true, "version": "gemm", "modules_to_not_convert": null,
///                      "meta": {"quantizer": ["kq:<version>"], "kq_mode": ...}}
///   model.safetensors  per quantized layer W [N, K] (tensor-name prefix P), its packed weight Q(W·diag(s)):
///                        P.qweight I32 [K, N/8]  nibble i (bits 4i..4i+3) of (k, c) = code of (8c + o[i], k),
///                                                o = {0, 2, 4, 6, 1, 3, 5, 7} (AutoAWQ's order)
///                        P.qzeros  I32 [K/B, N/8] nibble i of (g, c) = zero point of (g, 8c + o[i]) (8: symmetric)
///                        P.scales  F16 [K/B, N]  kq's F32 group scales, those of up_proj / v_proj divided by
///                                                the folded s (top of this file), rounded to FP16 (nearest even)
///                        P.bias    F16 [N]       when the layer has one (divided likewise)
///                      the input norms with 1/s folded in, and every other tensor the model uses under its
///                      source name, as FP16 (F32 / BF16 rounded to nearest even)
///   side files         copied as save_quantized_model copies them
/// Writing is atomic, as save_quantized_model's. Model::load(out) reads the
/// folder back (kq's AutoAWQ importer) with the same codes and zero points.
/// Throws InvalidArgument for what check_awq_options / check_awq_model_config
/// refuse, options that do not describe the model (as save_quantized_model), a
/// layer that is not an AWQ layer, q/k/v or gate/up with different s, an o_proj
/// whose s differs over the query heads of one kv head (named, with
/// QuantizeOptions::awq_unit_scale_layers as the remedy), a norm tensor missing
/// from the source, a folded scale or tensor value beyond FP16's range (named),
/// and as save_quantized_model for the model, `out` and the side files (before
/// anything is written); Error on I/O failure. A nonzero scale that FP16
/// flushes to zero is warned about (kq::warn, the count and the first layer).
void save_awq_model(Model& model, const QuantizeOptions& options, const std::filesystem::path& out,
                    bool overwrite = false);

}  // namespace kq
