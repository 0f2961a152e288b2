// AutoAWQ / AutoGPTQ checkpoints: quantization_config and their linear layers (see hub_checkpoint.hpp).
#include "models/hub_checkpoint.hpp"

#include <algorithm>
#include <cctype>
#include <cmath>

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

/// bits (required, 4) and group_size (−1 or > 0, default 128) of either method.
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
  return group;
}

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

std::unique_ptr<Linear> load_hub_int4_linear(const TensorGetter& get, const std::string& prefix,
                                             const HubInt4Config& config, int64_t N, int64_t K) {
  PackedWeight w = import_hub_int4(get, prefix, config, N, K);
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

}  // namespace kq::models
