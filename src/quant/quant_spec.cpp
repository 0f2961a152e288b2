// QuantSpec: validation, canonical names, CLI parsing, thresholds and sizes.
#include <algorithm>
#include <cctype>
#include <charconv>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "core/enum_name.hpp"
#include "kq/error.hpp"
#include "kq/quantize.hpp"

namespace kq {
namespace {

std::string lower(std::string_view s) {
  std::string l(s);
  std::transform(l.begin(), l.end(), l.begin(), [](unsigned char c) { return char(std::tolower(c)); });
  return l;
}

bool is_fp8(PrecisionFormat f) { return f == PrecisionFormat::FP8_E4M3 || f == PrecisionFormat::FP8_E5M2; }
bool is_4bit(PrecisionFormat f) {
  return f == PrecisionFormat::NF4 || f == PrecisionFormat::FP4 || f == PrecisionFormat::FP4_BNB ||
         f == PrecisionFormat::INT4;
}
bool valid_block(int b) { return b >= 32 && b <= 256 && (b & (b - 1)) == 0; }

constexpr int kDefaultCodebookBlock = 64;  // NF4/FP4/FP4_BNB (QLoRA, bitsandbytes)
constexpr int kDefaultInt4Group = 128;     // INT4 RTN / AWQ

}  // namespace

std::string_view precision_format_name(PrecisionFormat f) {
  switch (f) {
    case PrecisionFormat::FP32: return "fp32";
    case PrecisionFormat::BF16: return "bf16";
    case PrecisionFormat::FP16: return "fp16";
    case PrecisionFormat::INT8: return "int8";
    case PrecisionFormat::INT4: return "int4";
    case PrecisionFormat::NF4: return "nf4";
    case PrecisionFormat::FP4: return "fp4";
    case PrecisionFormat::FP8_E4M3: return "fp8_e4m3";
    case PrecisionFormat::FP8_E5M2: return "fp8_e5m2";
    case PrecisionFormat::FP4_BNB: return "fp4_bnb";
  }
  return unknown_enum_name(int64_t(f));
}

PrecisionFormat parse_precision_format(std::string_view s) {
  std::string l = lower(s);
  std::replace(l.begin(), l.end(), '-', '_');
  if (l == "f32" || l == "float32") return PrecisionFormat::FP32;
  if (l == "bfloat16") return PrecisionFormat::BF16;
  if (l == "f16" || l == "float16") return PrecisionFormat::FP16;
  if (l == "fp8") return PrecisionFormat::FP8_E4M3;
  for (PrecisionFormat f : {PrecisionFormat::FP32, PrecisionFormat::BF16, PrecisionFormat::FP16, PrecisionFormat::INT8,
                            PrecisionFormat::INT4, PrecisionFormat::NF4, PrecisionFormat::FP4,
                            PrecisionFormat::FP8_E4M3, PrecisionFormat::FP8_E5M2, PrecisionFormat::FP4_BNB}) {
    if (l == precision_format_name(f)) return f;
  }
  raise<InvalidArgument>(
      "unknown precision '{}' (valid: fp32, bf16, fp16, int8, int4, nf4, fp4, fp8_e4m3, fp8_e5m2, fp4_bnb)", s);
}

std::string_view scale_granularity_name(ScaleGranularity g) {
  switch (g) {
    case ScaleGranularity::PerTensor: return "per-tensor";
    case ScaleGranularity::PerChannel: return "per-channel";
    case ScaleGranularity::PerToken: return "per-token";
    case ScaleGranularity::PerGroup: return "per-group";
  }
  return unknown_enum_name(int64_t(g));
}

std::string_view quant_family_name(QuantFamily f) {
  switch (f) {
    case QuantFamily::INT8: return "int8";
    case QuantFamily::INT4: return "int4";
    case QuantFamily::FP8: return "fp8";
  }
  return unknown_enum_name(int64_t(f));
}

void validate_quant_spec(const QuantSpec& s) {
  if (int(s.format) < int(PrecisionFormat::FP32) || int(s.format) > int(PrecisionFormat::FP4_BNB))
    raise<InvalidArgument>("QuantSpec.format {} is not a PrecisionFormat", int(s.format));
  const std::string_view fname = precision_format_name(s.format);
  if (s.format == PrecisionFormat::FP32 || s.format == PrecisionFormat::BF16 || s.format == PrecisionFormat::FP16)
    raise<InvalidArgument>("QuantSpec.format {} is not a quantized weight format", fname);
  if (!s.fp8_saturate && !is_fp8(s.format))
    raise<InvalidArgument>("QuantSpec.fp8_saturate = false applies only to FP8 formats, not {}", fname);
  if (s.awq && s.format != PrecisionFormat::INT4)
    raise<InvalidArgument>("QuantSpec.awq (activation-aware scales) applies to int4 only, not {}", fname);
  if (is_4bit(s.format)) {
    if (!valid_block(s.block_size))
      raise<InvalidArgument>("QuantSpec.block_size {} ({} size of {}) must be a power of two in [32, 256]",
                             s.block_size, s.format == PrecisionFormat::INT4 ? "the group" : "the block",
                             s.awq ? std::string_view("awq") : fname);
    if (s.weight_scales != ScaleGranularity::PerGroup)
      raise<InvalidArgument>("QuantSpec.weight_scales for {} must be per-group (got {})", fname,
                             scale_granularity_name(s.weight_scales));
    if (s.quantize_activations)
      raise<InvalidArgument>("QuantSpec.quantize_activations: {} is weight-only (W4A16)", fname);
    if (s.compute_dtype != DType::F32 && s.compute_dtype != DType::BF16)
      raise<InvalidArgument>("QuantSpec.compute_dtype for {} must be F32 or BF16", fname);
    if (s.format == PrecisionFormat::INT4 && s.double_quant)
      raise<InvalidArgument>("QuantSpec.double_quant applies to NF4/FP4/FP4_BNB only, not int4");
    if (s.format != PrecisionFormat::INT4 && !s.symmetric)
      raise<InvalidArgument>("QuantSpec.symmetric = false (zero points) applies to int4 only, not {}", fname);
    return;
  }
  // INT8 and FP8: one scale per output channel or per tensor.
  if (s.block_size != 0)
    raise<InvalidArgument>("QuantSpec.block_size must be 0 for {} (per-channel or per-tensor scales)", fname);
  if (s.weight_scales != ScaleGranularity::PerChannel && s.weight_scales != ScaleGranularity::PerTensor)
    raise<InvalidArgument>("QuantSpec.weight_scales for {} must be per-channel or per-tensor (got {})", fname,
                           scale_granularity_name(s.weight_scales));
  if (s.double_quant)
    raise<InvalidArgument>("QuantSpec.double_quant applies to NF4/FP4/FP4_BNB only, not {}", fname);
  if (!s.symmetric) raise<InvalidArgument>("QuantSpec.symmetric = false is not supported for {}", fname);
  if (s.compute_dtype != DType::F32) raise<InvalidArgument>("QuantSpec.compute_dtype for {} must be F32", fname);
}

QuantFamily QuantSpec::family() const {
  if (int(format) < int(PrecisionFormat::INT8) || int(format) > int(PrecisionFormat::FP4_BNB))
    raise<InvalidArgument>("QuantSpec::family: format {} is not a quantized weight format", precision_format_name(format));
  if (format == PrecisionFormat::INT8) return QuantFamily::INT8;
  if (is_fp8(format)) return QuantFamily::FP8;
  return QuantFamily::INT4;
}

std::string QuantSpec::name() const {
  validate_quant_spec(*this);  // an invalid spec has no name (the fields would name another mode)
  std::string n;
  if (format == PrecisionFormat::INT8 || is_fp8(format)) {
    n = format == PrecisionFormat::INT8 ? "int8" : "fp8";
    if (format == PrecisionFormat::FP8_E5M2) n += "-e5m2";
    if (weight_scales == ScaleGranularity::PerTensor) n += "-pt";
    if (!quantize_activations) n += "-wo";
    if (!fp8_saturate) n += "-nosat";
    return n;
  }
  if (format == PrecisionFormat::INT4 && awq) {
    n = fmt::format("awq-g{}", block_size);  // AWQ's own default is asymmetric (zero points)
    if (symmetric) n += "-sym";
  } else if (format == PrecisionFormat::INT4) {
    n = fmt::format("int4-g{}", block_size);
    if (!symmetric) n += "-asym";
  } else {
    n = format == PrecisionFormat::NF4 ? "nf4" : format == PrecisionFormat::FP4 ? "fp4" : "fp4-bnb";
    if (block_size != kDefaultCodebookBlock) n += fmt::format("-b{}", block_size);
    if (!double_quant) n += "-nodq";
  }
  if (compute_dtype == DType::BF16) n += "-bf16";
  return n;
}

std::vector<std::string> valid_quant_mode_names() {
  std::vector<std::string> names;
  auto add = [&](const QuantSpec& s) { names.push_back(s.name()); };
  for (PrecisionFormat f : {PrecisionFormat::INT8, PrecisionFormat::FP8_E4M3, PrecisionFormat::FP8_E5M2})
    for (ScaleGranularity g : {ScaleGranularity::PerChannel, ScaleGranularity::PerTensor})
      for (bool act : {true, false})
        for (bool sat : {true, false}) {
          if (!sat && f == PrecisionFormat::INT8) continue;
          QuantSpec s;
          s.format = f;
          s.weight_scales = g;
          s.quantize_activations = act;
          s.fp8_saturate = sat;
          add(s);
        }
  for (PrecisionFormat f :
       {PrecisionFormat::NF4, PrecisionFormat::FP4, PrecisionFormat::FP4_BNB, PrecisionFormat::INT4})
    for (int b : {32, 64, 128, 256})
      for (bool variant : {true, false})  // NF4/FP4/FP4_BNB: double quant; INT4: symmetric
        for (DType c : {DType::F32, DType::BF16})
          for (bool awq : {false, true}) {
            if (awq && f != PrecisionFormat::INT4) continue;
            QuantSpec s;
            s.format = f;
            s.block_size = b;
            s.weight_scales = ScaleGranularity::PerGroup;
            s.compute_dtype = c;
            s.awq = awq;
            if (f == PrecisionFormat::INT4) {
              s.symmetric = variant;
            } else {
              s.double_quant = variant;
            }
            add(s);
          }
  std::sort(names.begin(), names.end());
  return names;
}

QuantSpec parse_quant_mode(std::string_view name) { return parse_quant_mode(name, {}); }

QuantSpec parse_quant_mode(std::string_view name, std::string_view more_valid) {
  // A hostile name (thousands of characters) is shown cut, with its length.
  const std::string shown = name.size() <= 40 ? std::string(name)
                                              : fmt::format("{}... ({} characters)", name.substr(0, 40), name.size());
  auto fail = [&](std::string_view why) -> QuantSpec {
    raise<InvalidArgument>(
        "unknown quantization mode '{}'{}; valid modes: int4 (the specification's INT4 mode = nf4), awq (= awq-g128), "
        "{}{}{}",
        shown, why, fmt::join(valid_quant_mode_names(), ", "), more_valid.empty() ? "" : ", ", more_valid);
  };
  const std::string l = lower(name);
  std::vector<std::string> tok;
  for (size_t p = 0; p <= l.size();) {
    const size_t q = std::min(l.find('-', p), l.size());
    tok.push_back(l.substr(p, q - p));
    p = q + 1;
  }
  QuantSpec s;
  const std::string& fam = tok[0];
  bool int4_integer = false;
  for (size_t i = 1; i < tok.size(); ++i)
    if (!tok[i].empty() && (tok[i][0] == 'g' || tok[i] == "asym" || tok[i] == "sym")) int4_integer = true;
  // "int4" alone is the specification's INT4 = nf4; with a group size (-gN) or zero points (-sym / -asym) it is
  // integer INT4. Any other int4 name ("int4-b64", "int4-bf16") could mean either, and -bN / -gN otherwise
  // name one size: refused, naming the two unambiguous spellings. A name that neither spelling makes valid
  // ("int4-b48", "int4-e4m3") goes on to be parsed as NF4, whose error says what is wrong with it, as nf4's does.
  if (fam == "int4" && tok.size() > 1 && !int4_integer) {
    std::string as_nf4 = "nf4", as_int4;
    bool sized = false;
    for (size_t i = 1; i < tok.size(); ++i) {
      const bool size_token = tok[i].size() > 1 && tok[i][0] == 'b' && std::isdigit((unsigned char)tok[i][1]);
      sized = sized || size_token;
      as_nf4 += "-" + tok[i];
      as_int4 += "-" + (size_token ? "g" + tok[i].substr(1) : tok[i]);
    }
    as_int4 = (sized ? "int4" : "int4-g" + std::to_string(kDefaultInt4Group)) + as_int4;
    std::vector<std::string> alternatives;
    for (const std::string& alt : {as_nf4, as_int4}) {
      try {
        const QuantSpec a = parse_quant_mode(alt);
        alternatives.push_back(fmt::format("{} ({}, {} of {}{})", alt,
                                           a.format == PrecisionFormat::NF4 ? "NF4" : "integer INT4",
                                           a.format == PrecisionFormat::NF4 ? "blocks" : "groups", a.block_size,
                                           a.format == PrecisionFormat::NF4 ? ", the specification's INT4" : ""));
      } catch (const InvalidArgument&) {
        // not a valid name of that format (int4-nodq has no integer spelling)
      }
    }
    if (!alternatives.empty())
      raise<InvalidArgument>("quantization mode '{}' is ambiguous: int4 alone is NF4 (the specification's INT4), "
                             "int4 with -gN, -sym or -asym is integer INT4; write {}",
                             shown, fmt::join(alternatives, " or "));
  }
  if (fam == "int8") {
    s.format = PrecisionFormat::INT8;
    s.quantize_activations = true;
  } else if (fam == "fp8") {
    s.format = PrecisionFormat::FP8_E4M3;
    s.quantize_activations = true;
  } else if (fam == "nf4" || fam == "fp4" || (fam == "int4" && !int4_integer)) {
    s.format = fam == "fp4" ? PrecisionFormat::FP4 : PrecisionFormat::NF4;
    s.block_size = kDefaultCodebookBlock;
    s.double_quant = true;
    s.weight_scales = ScaleGranularity::PerGroup;
  } else if (fam == "int4") {
    s.format = PrecisionFormat::INT4;
    s.block_size = kDefaultInt4Group;
    s.weight_scales = ScaleGranularity::PerGroup;
  } else if (fam == "awq") {
    s.format = PrecisionFormat::INT4;
    s.block_size = kDefaultInt4Group;
    s.weight_scales = ScaleGranularity::PerGroup;
    s.symmetric = false;
    s.awq = true;
  } else {
    return fail("");
  }
  std::vector<std::string> seen;
  // One modifier per setting: "int4-g128-asym-sym" or "nf4-b32-b64" would let the last one win.
  std::vector<std::pair<std::string, std::string>> setting_of;  // (setting, the modifier that set it)
  for (size_t i = 1; i < tok.size(); ++i) {
    const std::string& t = tok[i];
    if (std::find(seen.begin(), seen.end(), t) != seen.end()) return fail(fmt::format(" (repeated '{}')", t));
    seen.push_back(t);
    int num = 0;
    bool sized = false;
    if (t.size() > 1 && (t[0] == 'b' || t[0] == 'g')) {
      const auto [ptr, ec] = std::from_chars(t.data() + 1, t.data() + t.size(), num);
      sized = ptr == t.data() + t.size();
      if (sized && ec == std::errc::result_out_of_range)
        return fail(fmt::format(" (block / group size {} is out of range)", t.size() > 21 ? t.substr(0, 20) + "..." : t));
    }
    const bool four = is_4bit(s.format), codebook = four && s.format != PrecisionFormat::INT4;
    const char* setting = sized && four                                           ? "block / group size"
                          : (t == "nodq" || t == "dq")                            ? "double quantization"
                          : (t == "asym" || t == "sym")                           ? "zero points"
                          : (t == "bf16" || t == "f32" || t == "fp32")            ? "compute dtype"
                          : (t == "e4m3" || t == "e5m2")                          ? "FP8 format"
                          : t == "bnb"                                            ? "FP4 codebook"
                          : (t == "pt" || t == "pc")                              ? "scale granularity"
                          : (t == "wo" || t == "w8a8")                            ? "activation quantization"
                          : (t == "nosat" || t == "sat")                          ? "saturation"
                                                                                  : nullptr;
    if (setting) {
      for (const auto& [which, by] : setting_of)
        if (which == setting) return fail(fmt::format(" ('{}' and '{}' both set the {})", by, t, setting));
      setting_of.emplace_back(setting, t);
    }
    if (sized && four) {
      s.block_size = num;
    } else if ((t == "nodq" || t == "dq") && codebook) {
      s.double_quant = t == "dq";
    } else if ((t == "asym" || t == "sym") && s.format == PrecisionFormat::INT4) {
      s.symmetric = t == "sym";
    } else if ((t == "bf16" || t == "f32" || t == "fp32") && four) {
      s.compute_dtype = t == "bf16" ? DType::BF16 : DType::F32;
    } else if ((t == "e4m3" || t == "e5m2") && is_fp8(s.format)) {
      s.format = t == "e4m3" ? PrecisionFormat::FP8_E4M3 : PrecisionFormat::FP8_E5M2;
    } else if (t == "bnb" && fam == "fp4") {  // fp4-bnb: bitsandbytes' FP4 codebook in place of E2M1
      s.format = PrecisionFormat::FP4_BNB;
    } else if ((t == "pt" || t == "pc") && !four) {
      s.weight_scales = t == "pt" ? ScaleGranularity::PerTensor : ScaleGranularity::PerChannel;
    } else if ((t == "wo" || t == "w8a8") && !four) {
      s.quantize_activations = t == "w8a8";
    } else if ((t == "nosat" || t == "sat") && is_fp8(s.format)) {
      s.fp8_saturate = t == "sat";
    } else {
      return fail(fmt::format(" ('{}' is not a modifier of {})", t, fam));
    }
  }
  // The size given in the name (-gN / -bN), named as the mode names it.
  if (is_4bit(s.format) && !valid_block(s.block_size))
    raise<InvalidArgument>(
        "{} size {} must be a power of two in [32, 256] (mode '{}': use 32, 64, 128 or 256)",
        s.format == PrecisionFormat::INT4 ? "group" : "block", s.block_size, shown);
  try {
    validate_quant_spec(s);
  } catch (const InvalidArgument& e) {
    return fail(fmt::format(" ({})", e.what()));
  }
  // Not reached for an ambiguous int4 name: its NF4 spelling would have been valid.
  if (fam == "int4" && tok.size() > 1 && !int4_integer) return fail("");
  return s;
}

QuantSpec fp8_quant_spec(const FP8Config& cfg) {
  if (cfg.format != FP8Format::E4M3 && cfg.format != FP8Format::E5M2)
    raise<InvalidArgument>("fp8_quant_spec: FP8Config.format {} is neither E4M3 nor E5M2", int(cfg.format));
  QuantSpec s;
  s.format = cfg.format == FP8Format::E4M3 ? PrecisionFormat::FP8_E4M3 : PrecisionFormat::FP8_E5M2;
  s.weight_scales = cfg.weight_scales;
  s.quantize_activations = cfg.quantize_activations;
  s.fp8_saturate = cfg.saturate;
  validate_quant_spec(s);
  return s;
}

double max_ppl_increase_pct(const QuantSpec& spec) {
  switch (spec.family()) {
    case QuantFamily::INT8: return 2.0;
    case QuantFamily::INT4: return spec.awq ? 3.0 : 5.0;
    case QuantFamily::FP8: return 1.0;
  }
  return 0.0;
}

size_t quantized_weight_bytes(const QuantSpec& s, int64_t N, int64_t K) {
  validate_quant_spec(s);
  if (N < 1 || K < 1) raise<InvalidArgument>("weight shape [{}, {}]: both dimensions must be >= 1", N, K);
  // At most 2^56 elements: every sum below then stays far inside size_t.
  if (int64_t nk = 0; __builtin_mul_overflow(N, K, &nk) || nk > int64_t(1) << 56)
    raise<InvalidArgument>("weight shape [{}, {}]: more than 2^56 elements", N, K);
  const size_t n = size_t(N), k = size_t(K);
  if (!is_4bit(s.format)) return n * k + 4 * (s.weight_scales == ScaleGranularity::PerTensor ? 1 : n);
  const size_t blocks = n * ((k + size_t(s.block_size) - 1) / size_t(s.block_size));
  size_t bytes = n * ((k + 1) / 2);
  if (s.double_quant) {
    bytes += blocks + 4 * ((blocks + 255) / 256) + 4;
  } else {
    bytes += 4 * blocks;
  }
  if (!s.symmetric) bytes += blocks;
  if (s.awq) bytes += 4 * k;  // the F32 [K] input-channel scales
  return bytes;
}

double bits_per_weight(const QuantSpec& spec, int64_t N, int64_t K) {
  return 8.0 * double(quantized_weight_bytes(spec, N, K)) / (double(N) * double(K));
}

}  // namespace kq
