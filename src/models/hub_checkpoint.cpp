// AutoAWQ / AutoGPTQ / bitsandbytes checkpoints: quantization_config and their linear layers (see hub_checkpoint.hpp).
#include "models/hub_checkpoint.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

#include "formats/traits.hpp"
#include "io/json_strict.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/error.hpp"

namespace kq::models {
namespace {

std::string lower(std::string s) {
  std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return s;
}

/// The integer q[key] (`fallback` when absent or null). Throws FormatError naming cfg and the key otherwise.
int64_t int_key(const nlohmann::json& q, const char* key, int64_t fallback, const std::string& cfg) {
  if (!q.contains(key) || q[key].is_null()) return fallback;
  if (!q[key].is_number_integer())
    raise<FormatError>("{}: quantization_config.{} must be an integer, not {}", cfg, key, io::json_excerpt(q[key]));
  return q[key].get<int64_t>();
}

/// The boolean q[key] (`fallback` when absent or null). Throws FormatError naming cfg and the key otherwise.
bool bool_key(const nlohmann::json& q, const char* key, bool fallback, const std::string& cfg) {
  if (!q.contains(key) || q[key].is_null()) return fallback;
  if (!q[key].is_boolean())
    raise<FormatError>("{}: quantization_config.{} must be true or false, not {}", cfg, key, io::json_excerpt(q[key]));
  return q[key].get<bool>();
}

/// The string q[key], lower-cased (`fallback` when absent or null). Throws FormatError naming cfg and the key otherwise.
std::string string_key(const nlohmann::json& q, const char* key, const std::string& fallback, const std::string& cfg) {
  if (!q.contains(key) || q[key].is_null()) return fallback;
  if (!q[key].is_string())
    raise<FormatError>("{}: quantization_config.{} must be a string, not {}", cfg, key, io::json_excerpt(q[key]));
  return lower(q[key].get<std::string>());
}

/// bits (required, 4) and group_size (default 128) of either method: −1 (one group per row) or a positive
/// multiple of kq's smallest INT4 group (32), the sizes import_hub_int4 converts losslessly: a checkpoint group
/// of 32·m channels is m (or m / 2^j) whole kq groups of 32-256 with its scale and zero point repeated (96 → 3
/// groups of 32, 512 → 2 of 256). Any other size (16, 48, ...) has groups that no kq group fits in: refused here,
/// naming config.json and the key, before any tensor is read.
int64_t bits_and_group(const nlohmann::json& q, const std::string& method, const std::string& cfg) {
  if (!q.contains("bits") || q["bits"].is_null())
    raise<FormatError>("{}: quantization_config.bits is missing (kq converts 4-bit {} checkpoints)", cfg, method);
  const int64_t bits = int_key(q, "bits", 4, cfg);
  if (bits != 4)
    raise<FormatError>("{}: quantization_config.bits {} is not supported: kq converts 4-bit {} checkpoints into its "
                       "INT4 format",
                       cfg, bits, method);
  const int64_t group = int_key(q, "group_size", 128, cfg);
  if (group == 0 || group < -1)
    raise<FormatError>("{}: quantization_config.group_size {} must be -1 (one group per row) or positive", cfg,
                       group);
  const formats::FormatTraits& int4 = formats::format_traits(formats::WeightFormat::INT4_ASYM);
  if (group > 0 && group % int4.min_block != 0)
    raise<FormatError>("{}: quantization_config.group_size {} is not supported: kq converts {} checkpoints whose "
                       "group_size is -1 (one group per row) or a multiple of {} (32, 64, 128, 256, ...: kq's INT4 "
                       "groups are {}-{} consecutive input channels, a power of two, and each checkpoint group must "
                       "split into whole kq groups)",
                       cfg, group, method, int4.min_block, int4.min_block, int4.max_block);
  return group;
}

/// The op of `w` with "<prefix>.bias" (F16, BF16 or F32 [N], kept in F32) when `get` returns one. Throws
/// FormatError naming the bias for another dtype or shape or a NaN / Inf.
std::unique_ptr<Linear> with_bias(PackedWeight w, const TensorGetter& get, const std::string& prefix, int64_t N);

}  // namespace

bool is_hub_quant_method(const std::string& method) { return method == "awq" || method == "gptq"; }

HubInt4Config parse_hub_quant_config(const nlohmann::json& q, const std::string& cfg) {
  const std::string method = q.value("quant_method", std::string());
  HubInt4Config c;
  if (method == "awq") {
    c.group_size = bits_and_group(q, "AWQ", cfg);
    c.layout = HubInt4Layout::AwqGemm;
    if (!bool_key(q, "zero_point", true, cfg))
      raise<FormatError>("{}: quantization_config.zero_point false is not supported: AutoAWQ's GEMM layout, the one "
                         "kq converts, stores zero points",
                         cfg);
    const std::string version = string_key(q, "version", "gemm", cfg);
    if (version != "gemm")
      raise<FormatError>("{}: quantization_config.version '{}' is not supported: kq converts AutoAWQ's GEMM layout "
                         "(version \"gemm\"); GEMV, GEMV-fast, ExLlama, Marlin and IPEX checkpoints pack their "
                         "codes differently",
                         cfg, version);
    const std::string backend = string_key(q, "backend", "autoawq", cfg);
    if (backend != "autoawq")
      raise<FormatError>("{}: quantization_config.backend '{}' is not supported: kq converts AutoAWQ checkpoints "
                         "(backend \"autoawq\"), whose packing llm-awq's differs from",
                         cfg, backend);
    return c;
  }
  if (method == "gptq") {
    c.group_size = bits_and_group(q, "GPTQ", cfg);
    c.desc_act = bool_key(q, "desc_act", false, cfg);
    (void)bool_key(q, "sym", true, cfg);  // checked for its type; the zero points decide
    if (bool_key(q, "is_marlin_format", false, cfg))
      raise<FormatError>("{}: quantization_config.is_marlin_format true is not supported: kq converts the GPTQ "
                         "layout (checkpoint_format \"gptq\" or \"gptq_v2\"), not Marlin's repacked one",
                         cfg);
    const char* key = q.contains("checkpoint_format") && !q["checkpoint_format"].is_null() ? "checkpoint_format"
                                                                                            : "format";
    const std::string format = string_key(q, key, "gptq", cfg);
    if (format == "gptq")
      c.layout = HubInt4Layout::GptqV1;
    else if (format == "gptq_v2")
      c.layout = HubInt4Layout::GptqV2;
    else
      raise<FormatError>("{}: quantization_config.{} '{}' is not supported: kq converts GPTQ checkpoints in the "
                         "\"gptq\" (v1) or \"gptq_v2\" format",
                         cfg, key, format);
    return c;
  }
  raise<FormatError>("{}: quantization_config.quant_method {} is not one kq converts (\"awq\", \"gptq\")", cfg,
                     io::json_excerpt(q.value("quant_method", nlohmann::json())));
}

BnbConfig parse_bnb_quant_config(const nlohmann::json& q, const std::string& cfg) {
  BnbConfig c;
  c.int8 = bool_key(q, "load_in_8bit", false, cfg);
  const bool four = bool_key(q, "load_in_4bit", false, cfg);
  if (c.int8 == four)
    raise<FormatError>("{}: quantization_config.load_in_8bit and quantization_config.load_in_4bit are both {}: a bitsandbytes "
                       "checkpoint is either 8-bit (LLM.int8()) or 4-bit (NF4 or FP4)",
                       cfg, four ? "true" : "false");
  if (c.int8) {
    if (bool_key(q, "llm_int8_has_fp16_weight", false, cfg))
      raise<FormatError>("{}: quantization_config.llm_int8_has_fp16_weight true is not supported: such a checkpoint "
                         "stores 16-bit weights, not 8-bit codes (remove quantization_config to load it as an "
                         "unquantized model)",
                         cfg);
    if (q.contains("llm_int8_threshold") && !q["llm_int8_threshold"].is_null()) {
      const nlohmann::json& t = q["llm_int8_threshold"];
      if (!t.is_number() || !std::isfinite(t.get<double>()) || t.get<double>() < 0.0)
        raise<FormatError>("{}: quantization_config.llm_int8_threshold must be a number >= 0, not {}", cfg,
                           io::json_excerpt(t));
      c.threshold = t.get<double>();
    }
    return c;
  }
  // Absent: "fp4", transformers' default (BitsAndBytesConfig), so many 4-bit checkpoints are FP4.
  const std::string type = string_key(q, "bnb_4bit_quant_type", "fp4", cfg);
  if (type != "nf4" && type != "fp4")
    raise<FormatError>("{}: quantization_config.bnb_4bit_quant_type '{}' is not supported: bitsandbytes' 4-bit "
                       "types are \"nf4\" and \"fp4\" (kq converts both)",
                       cfg, type);
  c.fp4 = type == "fp4";
  const std::string storage = string_key(q, "bnb_4bit_quant_storage", "uint8", cfg);
  if (storage != "uint8")
    raise<FormatError>("{}: quantization_config.bnb_4bit_quant_storage '{}' is not supported (kq reads \"uint8\")",
                       cfg, storage);
  return c;
}

std::unique_ptr<Linear> load_bnb_int8_linear(const TensorGetter& get, const std::string& prefix,
                                             const BnbConfig& config, int64_t N, int64_t K) {
  return with_bias(import_bnb_int8(get, prefix, config.threshold == 0.0, N, K), get, prefix, N);
}

std::unique_ptr<Linear> load_bnb_4bit_linear(const TensorGetter& get, const std::string& prefix, bool fp4, int64_t N,
                                             int64_t K) {
  const std::string weight = prefix + ".weight",
                    name = weight + ".quant_state.bitsandbytes__" + bnb4_type_name(fp4);
  const Tensor t = get(name);
  if (!t.defined())
    raise<FormatError>("tensor '{}' is missing (needed by a bitsandbytes {} layer)", name, fp4 ? "FP4" : "NF4");
  if (t.dtype() != DType::U8 || t.ndim() != 1)
    raise<FormatError>("tensor '{}': expected U8 [bytes] (the packed JSON of the quant state), got {} {}", name,
                       dtype_name(t.dtype()), shape_str(t.shape()));
  const nlohmann::json j = io::parse_json_strict(
      std::string_view(static_cast<const char*>(t.raw()), size_t(t.numel())), "tensor '" + name + "'");
  if (!j.is_object()) raise<FormatError>("tensor '{}': the quant state is not a JSON object", name);
  const auto field = [&](const char* key) -> const nlohmann::json& {
    if (!j.contains(key)) raise<FormatError>("tensor '{}': the quant state has no \"{}\"", name, key);
    return j[key];
  };
  const auto integer = [&](const char* key) {
    const nlohmann::json& v = field(key);
    if (!v.is_number_integer())
      raise<FormatError>("tensor '{}': quant state \"{}\" must be an integer, not {}", name, key, io::json_excerpt(v));
    return v.get<int64_t>();
  };
  if (field("quant_type") != bnb4_type_name(fp4))
    raise<FormatError>("tensor '{}': quant state \"quant_type\" is {}, not \"{}\" (the tensor's name)", name,
                       io::json_excerpt(field("quant_type")), bnb4_type_name(fp4));
  Bnb4State st;
  st.fp4 = fp4;
  st.blocksize = integer("blocksize");
  const nlohmann::json& shape = field("shape");
  if (!shape.is_array() || shape.size() != 2 || !shape[0].is_number_integer() || !shape[1].is_number_integer())
    raise<FormatError>("tensor '{}': quant state \"shape\" must be [rows, cols], not {}", name,
                       io::json_excerpt(shape));
  st.rows = shape[0].get<int64_t>();
  st.cols = shape[1].get<int64_t>();
  st.nested = j.contains("nested_offset") || j.contains("nested_blocksize");
  if (st.nested) {
    st.nested_blocksize = integer("nested_blocksize");
    const nlohmann::json& off = field("nested_offset");
    if (!off.is_number())
      raise<FormatError>("tensor '{}': quant state \"nested_offset\" must be a number, not {}", name,
                         io::json_excerpt(off));
    st.nested_offset = float(off.get<double>());
  }
  return with_bias(import_bnb_4bit(get, weight, st, N, K), get, prefix, N);
}

std::unique_ptr<Linear> load_hub_int4_linear(const TensorGetter& get, const std::string& prefix,
                                             const HubInt4Config& config, int64_t N, int64_t K) {
  return with_bias(import_hub_int4(get, prefix, config, N, K), get, prefix, N);
}

std::vector<std::unique_ptr<Linear>> load_hub_int4_fused_linears(const TensorGetter& get, const std::string& prefix,
                                                                 const HubInt4Config& config,
                                                                 const std::vector<int64_t>& rows, int64_t K) {
  int64_t N = 0;
  for (const int64_t r : rows) {
    if (r < 1) raise<InvalidArgument>("'{}': a part of a fused layer must have at least one row, not {}", prefix, r);
    N += r;
  }
  if (rows.empty()) raise<InvalidArgument>("'{}': a fused layer needs at least one part", prefix);
  const PackedWeight all = import_hub_int4(get, prefix, config, N, K);
  std::vector<std::unique_ptr<Linear>> ops;
  int64_t row0 = 0;
  for (const int64_t r : rows) {
    ops.push_back(make_quantized_linear(hub_int4_rows(all, row0, r), Tensor()));
    row0 += r;
  }
  return ops;
}

namespace {
std::unique_ptr<Linear> with_bias(PackedWeight w, const TensorGetter& get, const std::string& prefix, int64_t N) {
  Tensor bias = get(prefix + ".bias");
  if (bias.defined()) {
    const std::string name = prefix + ".bias";
    if ((bias.dtype() != DType::F16 && bias.dtype() != DType::BF16 && bias.dtype() != DType::F32) ||
        bias.shape() != Shape{N})
      raise<FormatError>("tensor '{}': expected F16 (or BF16, F32) [{}], got {} {}", name, N,
                         dtype_name(bias.dtype()), shape_str(bias.shape()));
    bias = bias.to_f32();
    const float* b = bias.data<float>();
    for (int64_t n = 0; n < N; ++n)
      if (!std::isfinite(b[n])) raise<FormatError>("tensor '{}': non-finite value {} at index {}", name, b[n], n);
  }
  return make_quantized_linear(std::move(w), std::move(bias));
}
}  // namespace

}  // namespace kq::models
