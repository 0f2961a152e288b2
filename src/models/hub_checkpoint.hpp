#pragma once
// Pre-quantized Hugging Face Hub checkpoints (AutoAWQ "-AWQ", AutoGPTQ /
// GPTQModel "-GPTQ" folders): their config.json quantization_config, read and
// checked, and their 4-bit linear layers as kq INT4 ops (quant/hub_int4.hpp
// converts the tensors losslessly at load time).
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/linear.hpp"
#include "quant/bnb4.hpp"
#include "quant/bnb8.hpp"
#include "quant/hub_int4.hpp"

namespace kq::models {

/// Whether quantization_config.quant_method `method` is one kq converts ("awq", "gptq").
bool is_hub_quant_method(const std::string& method);

/// The layout of a quantization_config `q` whose quant_method is "awq" or
/// "gptq". `cfg` names config.json in messages. Keys read (absent ones take
/// transformers' defaults, AwqConfig / GPTQConfig):
///   awq:  bits (required, 4), group_size (128; −1 or > 0), zero_point (true;
///         false is refused: AutoAWQ's GEMM layout stores zero points),
///         version ("gemm", any case; "gemv", "gemv_fast", "exllama", "marlin",
///         "ipex" and others refused), backend ("autoawq"; "llm-awq" refused: its
///         packing differs), modules_to_not_convert (not read: such a layer has
///         a plain .weight and is loaded as one).
///   gptq: bits (required, 4), group_size (128; −1 or > 0), desc_act (false),
///         sym (true; not needed: the zero points decide), checkpoint_format or
///         format ("gptq" = v1, "gptq_v2"; "marlin", "bitblas", ... refused),
///         is_marlin_format (true refused).
/// Throws FormatError naming `cfg` and the key (with its value) for a missing,
/// mistyped, or unsupported value.
HubInt4Config parse_hub_quant_config(const nlohmann::json& q, const std::string& cfg);

/// Reads a quantization_config `q` of quant_method "bitsandbytes"
/// (transformers' BitsAndBytesConfig). Exactly one of load_in_8bit /
/// load_in_4bit must be true. 4-bit: bnb_4bit_quant_type "nf4" or "fp4"
/// (absent: "fp4", transformers' default; bitsandbytes' FP4 loads into kq's
/// FP4_BNB format, not kq's E2M1 FP4), bnb_4bit_quant_storage "uint8" when given. 8-bit: llm_int8_has_fp16_weight false (true stores 16-bit
/// weights, not codes), llm_int8_threshold a number >= 0 (default 6.0).
/// Throws FormatError naming `cfg` and the key.
BnbConfig parse_bnb_quant_config(const nlohmann::json& q, const std::string& cfg);

/// The kq INT8 op of the bitsandbytes 8-bit layer W [N, K] under `prefix`
/// (quant/bnb8.hpp: "<prefix>.weight" I8, "<prefix>.SCB", "<prefix>.weight_format"),
/// int8-wo when config.threshold > 0 else int8 (W8A8), with "<prefix>.bias" as
/// load_hub_int4_linear. Throws FormatError as import_bnb_int8 and for a bad bias.
std::unique_ptr<Linear> load_bnb_int8_linear(const TensorGetter& get, const std::string& prefix,
                                             const BnbConfig& config, int64_t N, int64_t K);

/// The kq op of the bitsandbytes 4-bit layer W [N, K] under `prefix`: NF4
/// (kq NF4), or with `fp4` FP4 (kq FP4_BNB) (quant/bnb4.hpp: "<prefix>.weight"
/// and its QuantState tensors; the packed JSON
/// "<prefix>.weight.quant_state.bitsandbytes__nf4" / "...__fp4" gives quant_type
/// "nf4" / "fp4", blocksize, shape, and nested_blocksize / nested_offset when
/// double quantized), with "<prefix>.bias" as load_hub_int4_linear. Throws
/// FormatError naming the tensor and field for a state that is missing, not
/// valid JSON, lacks / mistypes a field or names the other quant_type, and as
/// import_bnb_4bit.
std::unique_ptr<Linear> load_bnb_4bit_linear(const TensorGetter& get, const std::string& prefix, bool fp4, int64_t N,
                                             int64_t K);

/// The kq INT4 op of the linear layer W [N, K] stored under `prefix` in
/// `config`'s layout (import_hub_int4), with `prefix`.bias (F16, BF16 or F32
/// [N], kept in F32) when `get` returns one. Throws FormatError naming the
/// tensor as import_hub_int4 does, and for a bias of another dtype or shape or
/// with NaN / Inf.
std::unique_ptr<Linear> load_hub_int4_linear(const TensorGetter& get, const std::string& prefix,
                                             const HubInt4Config& config, int64_t N, int64_t K);

/// The kq INT4 ops of the parts of a layer the checkpoint quantized as one, W [sum of `rows`, K] stored under
/// `prefix` in `config`'s layout (Phi-3's "...self_attn.qkv_proj": q, k then v rows; "...mlp.gate_up_proj": gate
/// then up rows): the fused layer converted by import_hub_int4 (every check and message about its tensors, named
/// as the file names them), then split by output rows (hub_int4_rows), part i the next rows[i] rows. Lossless:
/// each op is the one load_hub_int4_linear gives for its rows stored as a layer of their own. A "<prefix>.bias" is
/// not read (the fused layers kq splits, Phi-3's, have none). Throws FormatError as import_hub_int4,
/// InvalidArgument for an empty `rows` or a part of fewer than 1 row.
std::vector<std::unique_ptr<Linear>> load_hub_int4_fused_linears(const TensorGetter& get, const std::string& prefix,
                                                                 const HubInt4Config& config,
                                                                 const std::vector<int64_t>& rows, int64_t K);

}  // namespace kq::models
