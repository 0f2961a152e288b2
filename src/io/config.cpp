// Hugging Face config.json -> kq::ModelConfig for GPT-2 and Llama (and Mistral, Qwen2, Qwen3, Phi3, Gemma,
// Gemma2, Gemma3: Llama's architecture). Key names and defaults follow transformers' GPT2Config, LlamaConfig,
// MistralConfig, Qwen2Config, Qwen3Config, Phi3Config, GemmaConfig, Gemma2Config and Gemma3TextConfig.
#include <algorithm>
#include <cmath>
#include <limits>
#include <optional>
#include <span>
#include <string_view>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <nlohmann/json.hpp>

#include "core/enum_name.hpp"
#include "io/atomic_dir.hpp"
#include "io/json_strict.hpp"
#include "kq/config.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"

namespace kq {
using nlohmann::json;

std::string arch_name(Arch a) {
  switch (a) {
    case Arch::GPT2: return "gpt2";
    case Arch::Llama: return "llama";
    case Arch::Mistral: return "mistral";
    case Arch::Qwen2: return "qwen2";
    case Arch::Qwen3: return "qwen3";
    case Arch::Phi3: return "phi3";
    case Arch::Gemma3: return "gemma3_text";
    case Arch::Gemma: return "gemma";
    case Arch::Gemma2: return "gemma2";
  }
  return std::string(unknown_enum_name(int64_t(a)));
}

std::string rope_type_name(RopeScaling::Type t) {
  switch (t) {
    case RopeScaling::Type::Default: return "default";
    case RopeScaling::Type::Linear: return "linear";
    case RopeScaling::Type::Llama3: return "llama3";
    case RopeScaling::Type::LongRope: return "longrope";
    case RopeScaling::Type::Yarn: return "yarn";
    case RopeScaling::Type::Dynamic: return "dynamic";
  }
  return std::string(unknown_enum_name(int64_t(t)));
}

namespace {

constexpr int64_t kMaxSize = std::numeric_limits<int32_t>::max();  // sanity cap for any dimension

/// The same quantity under transformers' GPT2Config and LlamaConfig names,
/// for errors about a config whose keys belong to the other architecture.
struct KeyPair {
  const char* gpt2;
  const char* llama;
};
constexpr KeyPair kKeyPairs[] = {
    {"n_layer", "num_hidden_layers"},      {"n_embd", "hidden_size"},
    {"n_head", "num_attention_heads"},     {"n_positions", "max_position_embeddings"},
    {"n_inner", "intermediate_size"},      {"layer_norm_epsilon", "rms_norm_eps"},
    {"activation_function", "hidden_act"},
};
/// The pairs above that transformers' GPT2Config.attribute_map also accepts
/// under the Llama name (one attribute: either key sets it).
constexpr KeyPair kGpt2Aliases[] = {
    {"n_layer", "num_hidden_layers"},
    {"n_embd", "hidden_size"},
    {"n_head", "num_attention_heads"},
    {"n_positions", "max_position_embeddings"},
};
bool is_gpt2_alias(const char* llama_key) {
  for (const KeyPair& a : kGpt2Aliases)
    if (std::string_view(a.llama) == llama_key) return true;
  return false;
}
/// Keys only one of the two architectures' configs has (pairs above plus these).
constexpr const char* kGpt2OnlyKeys[] = {"n_ctx"};
constexpr const char* kLlamaOnlyKeys[] = {"num_key_value_heads", "rope_theta", "rope_parameters"};

/// Reads config keys with uniform error messages "<source>: key 'k': ...".
/// `type` is the config's model_type ("gpt2", "llama", "mistral", "qwen2", "qwen3" or "phi3"), named when a
/// required key is missing.
class Reader {
 public:
  Reader(const json& j, const std::string& source, const std::string& type) : j_(j), src_(source), type_(type) {}

  /// true when `key` is present and JSON null (which find() takes for absent).
  bool is_null(const char* key) const {
    const auto it = j_.find(key);
    return it != j_.end() && it->is_null();
  }
  /// The value of `key`, or nullptr when absent or JSON null.
  const json* find(const char* key) const {
    const auto it = j_.find(key);
    return (it == j_.end() || it->is_null()) ? nullptr : &*it;
  }
  /// A positive integer (<= 2^31-1). Throws when absent and no fallback.
  int64_t size(const char* key, std::optional<int64_t> fallback = std::nullopt) const {
    const json* v = find(key);
    if (!v) {
      if (fallback) return *fallback;
      missing(key);
    }
    return size_value(key, *v);
  }
  /// A non-negative integer (<= 2^31-1), `fallback` when absent or null.
  int64_t count(const char* key, int64_t fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    const bool ok = v->is_number_unsigned() ? v->get<uint64_t>() <= uint64_t(kMaxSize)
                    : v->is_number_integer() ? (v->get<int64_t>() >= 0 && v->get<int64_t>() <= kMaxSize)
                                             : false;
    if (!ok)
      raise<FormatError>("{}: key '{}': expected an integer from 0 to {}, got {}", src_, key, kMaxSize,
                         io::json_excerpt(*v));
    return v->get<int64_t>();
  }
  /// Throws FormatError for the absent required `key` (`alts`: the other keys
  /// that would do; empty when none), naming the model_type, whether the key
  /// is missing or null (`"key": null`, which find() takes for absent; with
  /// `alts`, which of them are null), and, when the file holds keys of the
  /// other architecture, those keys and that model_type.
  [[noreturn]] void missing(const char* key, const std::vector<const char*>& alts = {}) const {
    const bool gpt2 = type_ == "gpt2";
    std::vector<std::string> foreign;  // keys only the other architecture uses, present here
    for (const KeyPair& p : kKeyPairs)
      if (!(gpt2 && is_gpt2_alias(p.llama)) && find(gpt2 ? p.llama : p.gpt2))
        foreign.push_back(fmt::format("'{}'", gpt2 ? p.llama : p.gpt2));
    const std::span<const char* const> only = gpt2 ? std::span<const char* const>(kLlamaOnlyKeys)
                                                   : std::span<const char* const>(kGpt2OnlyKeys);
    for (const char* k : only)
      if (find(k)) foreign.push_back(fmt::format("'{}'", k));
    std::string other;
    if (!foreign.empty()) {
      std::string counterpart;  // the other architecture's name for `key`, when the file has it
      for (const KeyPair& p : kKeyPairs)
        if (std::string_view(gpt2 ? p.gpt2 : p.llama) == key && find(gpt2 ? p.llama : p.gpt2))
          counterpart = fmt::format(" ('{}' is the {} name of '{}')", gpt2 ? p.llama : p.gpt2,
                                    gpt2 ? "Llama" : "GPT-2", key);
      other = fmt::format("; the file has {}, keys of a {} config{}: is \"model_type\" meant to be \"{}\"?",
                          fmt::join(foreign, ", "), gpt2 ? "Llama" : "GPT-2", counterpart,
                          gpt2 ? "llama" : "gpt2");
    }
    std::vector<std::string> quoted_alts, nulls;  // nulls: the keys given as null
    for (const char* k : alts) quoted_alts.push_back(fmt::format("'{}'", k));
    const auto note_null = [&](const char* k) {
      if (const auto it = j_.find(k); it != j_.end() && it->is_null()) nulls.push_back(fmt::format("'{}'", k));
    };
    note_null(key);
    for (const char* k : alts) note_null(k);
    const std::string state = nulls.empty() ? "missing"
                              : alts.empty()
                                  ? "null"
                                  : fmt::format("missing or null ({} {} null)", fmt::join(nulls, " and "),
                                                nulls.size() == 1 ? "is" : "are");
    raise<FormatError>("{}: model_type '{}' requires key '{}'{}, which is {}{}", src_, io::text_excerpt(type_), key,
                       alts.empty() ? std::string() : fmt::format(" (or {})", fmt::join(quoted_alts, " or ")), state,
                       other);
  }
  int64_t size_value(const std::string& key, const json& v) const {
    // Parsed JSON holds non-negative integers as unsigned, built JSON may hold them signed.
    const bool ok = v.is_number_unsigned() ? (v.get<uint64_t>() >= 1 && v.get<uint64_t>() <= uint64_t(kMaxSize))
                    : v.is_number_integer() ? (v.get<int64_t>() >= 1 && v.get<int64_t>() <= kMaxSize)
                                            : false;
    if (!ok)
      raise<FormatError>("{}: key '{}': expected a positive integer up to {}, got {}", src_, key, kMaxSize,
                         io::json_excerpt(v));
    return v.get<int64_t>();
  }
  /// A finite positive number.
  double positive(const std::string& key, const json* v, double fallback) const {
    if (!v) return fallback;
    if (!v->is_number()) raise<FormatError>("{}: key '{}': expected a number, got {}", src_, key, io::json_excerpt(*v));
    const double d = v->get<double>();
    if (!std::isfinite(d) || d <= 0)
      raise<FormatError>("{}: key '{}': expected a finite positive number, got {}", src_, key, io::json_excerpt(*v));
    return d;
  }
  double positive(const char* key, double fallback) const { return positive(key, find(key), fallback); }
  /// A finite positive number that stays a normal one as a float32 (at least FLT_MIN, at most FLT_MAX once rounded
  /// to float32): RoPE's theta and scaling factors, which the tables use in float32 as transformers does
  /// (cpu::rope_inv_freq), where 1e39 is infinite (no rotation left: silent garbage) and 1e-300 zero (non-finite
  /// logits, blamed on the weights); Gemma 2's soft-capping, applied in float32 (an infinite cap gives
  /// inf · tanh(x / inf) = NaN). Absent (`v` null): `fallback`, unchecked. `use`: where the value is used in
  /// float32, for the message.
  double positive_f32(const std::string& key, const json* v, double fallback,
                      const char* use = "the RoPE tables are computed") const {
    if (!v) return fallback;  // the caller's default as it is (a soft-capping's 0: none)
    const double d = positive(key, v, fallback);
    const float f = static_cast<float>(d);
    if (!std::isfinite(f) || f < std::numeric_limits<float>::min())
      raise<FormatError>("{}: key '{}': {} is outside float32's range ({} to {}), in which {} (as transformers does)",
                         src_, key, io::json_excerpt(*v), std::numeric_limits<float>::min(),
                         std::numeric_limits<float>::max(), use);
    return d;
  }
  /// A norm epsilon: positive and below 1 (added to the variance of
  /// activations; 1e300, finite as a double, is infinite as the FP32 the
  /// kernels use and turns every output uniform).
  double epsilon(const char* key, double fallback) const {
    const double d = positive(key, fallback);
    if (d >= 1.0)
      raise<FormatError>(
          "{}: key '{}': {} is not a norm epsilon (expected a small positive number such as 1e-5)", src_, key,
          io::json_excerpt(*find(key)));
    return d;
  }
  bool boolean(const char* key, bool fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_boolean())
      raise<FormatError>("{}: key '{}': expected true/false, got {}", src_, key, io::json_excerpt(*v));
    return v->get<bool>();
  }
  std::string string(const char* key, const std::string& fallback) const {
    const json* v = find(key);
    if (!v) return fallback;
    if (!v->is_string()) raise<FormatError>("{}: key '{}': expected a string, got {}", src_, key, io::json_excerpt(*v));
    return v->get<std::string>();
  }
  const std::string& source() const { return src_; }

 private:
  const json& j_;
  const std::string& src_;
  const std::string type_;
};

/// A GPT-2 size under its GPT2Config name `key` or its attribute_map alias
/// `alias` (the Llama name); `used` is set to the key it was read from (`key`
/// when the file has both). Both present with different values: FormatError
/// naming both keys and values (transformers reads them into one attribute,
/// the alias silently winning). Neither present: `fallback` (a key read
/// instead, e.g. n_ctx) if given and present, else the missing-key error.
int64_t gpt2_size(const Reader& r, std::string& used, const char* key, const char* alias,
                  const char* fallback = nullptr) {
  const json* v = r.find(key);
  const json* a = r.find(alias);
  used = !v && !a && fallback && r.find(fallback) ? fallback : !v && a ? alias : key;
  if (v && a) {
    const int64_t x = r.size_value(key, *v), y = r.size_value(alias, *a);
    if (x != y)
      raise<FormatError>("{}: {} {} conflicts with {} {} (transformers' GPT2Config reads '{}' as '{}': give one, or "
                         "the same value in both)",
                         r.source(), key, x, alias, y, alias, key);
    return x;
  }
  if (v) return r.size_value(key, *v);
  if (a) return r.size_value(alias, *a);
  if (fallback && r.find(fallback)) return r.size(fallback);
  r.missing(key, fallback ? std::vector<const char*>{alias, fallback} : std::vector<const char*>{alias});
}

ModelConfig parse_gpt2(const Reader& r) {
  ModelConfig c;
  c.arch = Arch::GPT2;
  ModelConfig::SizeKeys& k = c.size_keys;
  c.num_layers = gpt2_size(r, k.num_layers, "n_layer", "num_hidden_layers");
  c.hidden_size = gpt2_size(r, k.hidden_size, "n_embd", "hidden_size");
  c.num_heads = gpt2_size(r, k.num_heads, "n_head", "num_attention_heads");
  c.num_kv_heads = c.num_heads;
  c.vocab_size = r.size("vocab_size");
  c.max_positions = gpt2_size(r, k.max_positions, "n_positions", "max_position_embeddings", "n_ctx");
  c.intermediate_size = r.find("n_inner") ? r.size("n_inner") : 4 * c.hidden_size;
  c.norm_eps = r.epsilon("layer_norm_epsilon", 1e-5);
  c.activation = r.string("activation_function", "gelu_new");
  if (c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh" && c.activation != "gelu")
    raise<FormatError>("{}: activation_function '{}' is not supported (supported: gelu_new, gelu_pytorch_tanh, gelu)",
                       r.source(), io::text_excerpt(c.activation));
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", true);
  // Attention variants that change the arithmetic: refuse rather than compute something else.
  if (!r.boolean("scale_attn_weights", true))
    raise<FormatError>("{}: scale_attn_weights = false is not supported (attention scores are always scaled "
                       "by 1/sqrt(head_dim))", r.source());
  if (r.boolean("scale_attn_by_inverse_layer_idx", false))
    raise<FormatError>("{}: scale_attn_by_inverse_layer_idx = true is not supported", r.source());
  c.attention_bias = true;  // GPT-2 c_attn / c_proj always carry biases
  c.mlp_bias = true;        // and so do c_fc / c_proj of the MLP
  if (c.hidden_size % c.num_heads != 0)
    raise<FormatError>("{}: {} {} is not divisible by {} {}", r.source(), k.hidden_size, c.hidden_size, k.num_heads,
                       c.num_heads);
  c.head_dim = c.hidden_size / c.num_heads;
  return c;
}

/// The RoPE scaling the object `obj` at `where` ("rope_scaling" or "rope_parameters") gives, as transformers
/// reads it (rope_type, else transformers 4's "type"; the keys of _compute_linear_scaling_rope_parameters,
/// _compute_llama3_parameters and, when `phi3`, _compute_longrope_parameters); nullopt when it names no type.
/// Throws FormatError for a non-object, a type that is not a string, rope_type and type that differ, a type other
/// than default / linear / llama3 (and longrope / su for phi3), and a scaling key that is missing, null or invalid
/// (named as "<where>.<key>"; a factor list's bad value as "<where>.<key>[i]"). longrope's optional keys read as
/// 0 when absent (original_max_position_embeddings, factor, attention_factor): longrope_context completes them.
std::optional<RopeScaling> rope_scaling_of(const Reader& r, const char* where, const json& obj, bool phi3) {
  if (!obj.is_object())
    raise<FormatError>("{}: '{}' must be an object or null, got {}", r.source(), where, io::json_excerpt(obj));
  // transformers 5's form for models with several layer types ({"full_attention": {...}, ...}): read as one
  // flat object it would silently be default RoPE.
  for (const auto& [key, value] : obj.items())
    if (value.is_object())
      raise<FormatError>("{}: '{}.{}' is an object: RoPE parameters per layer type are not supported (only one "
                         "flat object of rope_type, rope_theta and its keys)",
                         r.source(), where, io::text_excerpt(key));
  std::optional<std::string> type;
  const char* type_key = nullptr;
  for (const char* k : {"rope_type", "type"}) {
    const auto it = obj.find(k);
    if (it == obj.end() || it->is_null()) continue;
    if (!it->is_string())
      raise<FormatError>("{}: '{}.{}' must be a string, got {}", r.source(), where, k, io::json_excerpt(*it));
    const std::string& t = it->get_ref<const std::string&>();
    if (type && *type != t)
      raise<FormatError>("{}: {}.rope_type '{}' and {}.type '{}' differ (transformers reads rope_type)", r.source(),
                         where, io::text_excerpt(*type), where, io::text_excerpt(t));
    if (!type) {
      type = t;
      type_key = k;
    }
  }
  if (!type) return std::nullopt;
  // A scaling key's value, which the type requires; `name` is "<where>.<key>".
  const auto value = [&](const char* key, std::string& name) -> const json& {
    name = fmt::format("{}.{}", where, key);
    const auto it = obj.find(key);
    if (it == obj.end() || it->is_null())
      raise<FormatError>("{}: RoPE scaling type '{}' requires key '{}', which is {}", r.source(), *type, name,
                         it == obj.end() ? "missing" : "null");
    return *it;
  };
  const auto number = [&](const char* key) {
    std::string name;
    const json& v = value(key, name);
    return r.positive_f32(name, &v, 0);
  };
  RopeScaling s;
  if (*type == "default") return s;
  if (*type == "linear") {
    s.type = RopeScaling::Type::Linear;
    s.factor = number("factor");
    return s;
  }
  if (*type == "llama3") {
    s.type = RopeScaling::Type::Llama3;
    s.factor = number("factor");
    s.low_freq_factor = number("low_freq_factor");
    s.high_freq_factor = number("high_freq_factor");
    std::string name;
    const json& v = value("original_max_position_embeddings", name);
    s.original_max_positions = r.size_value(name, v);
    if (float(s.high_freq_factor) == float(s.low_freq_factor))  // as float32, in which the tables are computed
      raise<FormatError>("{}: {}.high_freq_factor {} equals {}.low_freq_factor (llama3 RoPE scaling divides by "
                         "their difference)",
                         r.source(), where, s.high_freq_factor, where, s.low_freq_factor);
    // Swapped factors (a copy/paste slip) run, but not as the scaling meant: the band of blended frequencies is
    // empty, every wavelength above original / low_freq_factor scaled (cpu::rope_inv_freq, as transformers).
    // transformers' _validate_llama3_parameters warns here too.
    if (float(s.high_freq_factor) < float(s.low_freq_factor))
      warn(fmt::format("{}: {}.low_freq_factor {} is above {}.high_freq_factor {}: llama3 RoPE scaling expects "
                       "low_freq_factor < high_freq_factor (Llama 3.1: 1 and 4; swapped values?); as given, no "
                       "frequency is blended and every wavelength above original_max_position_embeddings / "
                       "low_freq_factor is scaled (kq runs them as transformers does, which warns too)",
                       r.source(), where, s.low_freq_factor, where, s.high_freq_factor));
    return s;
  }
  // An optional key's value (nullptr when absent or null; `name` is "<where>.<key>").
  const auto optional = [&](const char* key, std::string& name) -> const json* {
    name = fmt::format("{}.{}", where, key);
    const auto it = obj.find(key);
    return it == obj.end() || it->is_null() ? nullptr : &*it;
  };
  if (*type == "dynamic") {  // the default frequencies within max_position_embeddings (RopeScaling::Type::Dynamic)
    s.type = RopeScaling::Type::Dynamic;
    s.factor = number("factor");
    return s;
  }
  if (*type == "yarn" && !phi3) {  // Phi3Config reads "yarn" as an old name of longrope (below)
    s.type = RopeScaling::Type::Yarn;
    s.factor = number("factor");
    std::string name;
    // Optional: original_max_position_embeddings (else max_position_embeddings) and attention_factor (else from
    // mscale / mscale_all_dim) are completed by yarn_context; 0 marks them absent.
    s.original_max_positions = 0;
    s.attention_factor = 0;
    if (const json* v = optional("original_max_position_embeddings", name))
      s.original_max_positions = r.size_value(name, *v);
    if (const json* v = optional("attention_factor", name)) s.attention_factor = r.positive_f32(name, v, 0);
    // transformers: `get("beta_fast") or 32`: absent, null or 0 take the default.
    if (const json* v = optional("beta_fast", name); v && !(v->is_number() && v->get<double>() == 0))
      s.beta_fast = r.positive(name, v, 32);
    if (const json* v = optional("beta_slow", name); v && !(v->is_number() && v->get<double>() == 0))
      s.beta_slow = r.positive(name, v, 1);
    if (const json* v = optional("truncate", name)) {
      if (!v->is_boolean())
        raise<FormatError>("{}: key '{}': expected true or false, got {}", r.source(), name, io::json_excerpt(*v));
      s.truncate = v->get<bool>();
    }
    // mscale / mscale_all_dim (DeepSeek-V3): used, as in transformers, only when both are given and non-zero.
    double mscale = 0, mscale_all_dim = 0;
    if (const json* v = optional("mscale", name); v && !(v->is_number() && v->get<double>() == 0))
      mscale = r.positive(name, v, 0);
    if (const json* v = optional("mscale_all_dim", name); v && !(v->is_number() && v->get<double>() == 0))
      mscale_all_dim = r.positive(name, v, 0);
    if (s.attention_factor == 0) {
      const auto get_mscale = [&](double m) { return s.factor <= 1.0 ? 1.0 : 0.1 * m * std::log(s.factor) + 1.0; };
      s.attention_factor = mscale > 0 && mscale_all_dim > 0 ? get_mscale(mscale) / get_mscale(mscale_all_dim)
                                                            : get_mscale(1.0);
      if (!std::isfinite(s.attention_factor) || !(float(s.attention_factor) > 0))
        raise<FormatError>("{}: the yarn attention factor from {}.factor {:g}{} is {:g}, not a finite positive "
                           "number; give {}.attention_factor",
                           r.source(), where, s.factor,
                           mscale > 0 && mscale_all_dim > 0
                               ? fmt::format(", mscale {:g} and mscale_all_dim {:g}", mscale, mscale_all_dim)
                               : std::string(),
                           s.attention_factor, where);
    }
    return s;
  }
  // Phi3Config reads the old names "su" and "yarn" as "longrope" (Phi3Config._rope_scaling_adjustment).
  if (*type == "longrope" || *type == "su" || (phi3 && *type == "yarn")) {
    if (!phi3)
      raise<FormatError>("{}: RoPE scaling type '{}' ({}.{}) is supported for model_type phi3 only (supported here: "
                         "default, linear, llama3, yarn, dynamic)",
                         r.source(), io::text_excerpt(*type), where, type_key);
    s.type = RopeScaling::Type::LongRope;
    for (const char* key : {"short_factor", "long_factor"}) {
      std::string name;
      const json& v = value(key, name);
      if (!v.is_array() || v.empty())
        raise<FormatError>("{}: key '{}': expected a list of numbers (one per rotated dimension pair), got {}",
                           r.source(), name, io::json_excerpt(v));
      std::vector<double>& out = std::string_view(key) == "short_factor" ? s.short_factor : s.long_factor;
      for (size_t i = 0; i < v.size(); ++i) out.push_back(r.positive_f32(fmt::format("{}[{}]", name, i), &v[i], 0));
    }
    // Optional: taken from the config's other keys when absent (longrope_context).
    s.original_max_positions = 0;
    s.factor = 0;
    s.attention_factor = 0;
    if (const auto it = obj.find("original_max_position_embeddings"); it != obj.end() && !it->is_null())
      s.original_max_positions = r.size_value(fmt::format("{}.original_max_position_embeddings", where), *it);
    if (const auto it = obj.find("factor"); it != obj.end() && !it->is_null())
      s.factor = r.positive_f32(fmt::format("{}.factor", where), &*it, 0);
    if (const auto it = obj.find("attention_factor"); it != obj.end() && !it->is_null())
      s.attention_factor = r.positive_f32(fmt::format("{}.attention_factor", where), &*it, 0);
    return s;
  }
  raise<FormatError>("{}: RoPE scaling type '{}' ({}.{}) is not supported (supported: default, linear, llama3, {})",
                     r.source(), io::text_excerpt(*type), where, type_key,
                     phi3 ? "dynamic, longrope (su, yarn)" : "yarn, dynamic");
}

/// Rejects a partial_rotary_factor (at `key`; `v` null when absent) other than 1.
void check_partial_rotary_factor(const Reader& r, const char* key, const json* v) {
  if (!v) return;
  const double f = r.positive(key, v, 1.0);
  if (f != 1.0)
    raise<FormatError>("{}: {} {} is not supported (RoPE over that fraction of head_dim; kq rotates the whole "
                       "head_dim: only 1)",
                       r.source(), key, io::json_excerpt(*v));
}

/// Phi3's rotary_dim: int(head_dim · partial_rotary_factor) as Phi3's rotary embedding computes it, from the
/// top-level key or rope_parameters' (transformers 5; both given must agree); head_dim when neither is given.
/// Throws FormatError naming the key for a factor that is not a number in (0, 1], or one that leaves an odd or
/// zero rotary_dim (rotate_half pairs dimension i with i + rotary_dim/2).
int64_t phi3_rotary_dim(const Reader& r, int64_t head_dim) {
  const char* key = nullptr;
  double f = 1.0;
  const auto read = [&](const char* k, const json* v) {
    if (!v) return;
    const double x = r.positive(k, v, 1.0);
    if (x > 1.0)
      raise<FormatError>("{}: key '{}': {} is not a fraction of head_dim (expected a number in (0, 1])", r.source(),
                         k, io::json_excerpt(*v));
    if (key && x != f)
      raise<FormatError>("{}: {} {} conflicts with {} {}", r.source(), k, x, key, f);
    key = k;
    f = x;
  };
  if (const json* rp = r.find("rope_parameters"); rp && rp->is_object())
    if (const auto it = rp->find("partial_rotary_factor"); it != rp->end() && !it->is_null())
      read("rope_parameters.partial_rotary_factor", &*it);
  read("partial_rotary_factor", r.find("partial_rotary_factor"));
  const auto dim = static_cast<int64_t>(double(head_dim) * f);  // Python's int(): truncation
  if (dim < 2 || dim % 2 != 0)
    raise<FormatError>("{}: {} {} gives rotary_dim int(head_dim {} × {}) = {}, which RoPE cannot rotate (it must be "
                       "even and at least 2)",
                       r.source(), key, f, head_dim, f, dim);
  return dim;
}

/// Completes and checks Phi3's longrope scaling `s` (rope_scaling_of's, at `where`) for the config `c` read so far
/// (head_dim, rotary_dim, max_positions = max_position_embeddings): both factor lists have rotary_dim/2 values;
/// original_max_position_embeddings is the scaling's own key, else the top-level one (Phi3Config's default 4096);
/// the attention factor is computed as transformers' _compute_longrope_parameters does when not given. The context
/// stays max_position_embeddings: past original_max_position_embeddings the long factors serve (RopeScaling::
/// Type::LongRope).
void longrope_context(const Reader& r, const char* where, ModelConfig& c) {
  RopeScaling& s = c.rope_scaling;
  const int64_t pairs = c.rotary_dim / 2;
  for (const auto& [key, list] :
       {std::pair{"short_factor", &s.short_factor}, std::pair{"long_factor", &s.long_factor}})
    if (int64_t(list->size()) != pairs)
      raise<FormatError>("{}: key '{}.{}' has {} value{}; longrope needs one per rotated dimension pair: rotary_dim / "
                         "2 = {} (head_dim {}{})",
                         r.source(), where, key, list->size(), list->size() == 1 ? "" : "s", pairs, c.head_dim,
                         c.rotary_dim != c.head_dim ? fmt::format(" × partial_rotary_factor = rotary_dim {}",
                                                                  c.rotary_dim)
                                                    : std::string());
  std::string original_key = fmt::format("{}.original_max_position_embeddings", where);
  if (s.original_max_positions == 0) {
    original_key = "original_max_position_embeddings";
    s.original_max_positions = r.size("original_max_position_embeddings", 4096);  // Phi3Config's default
  }
  const double original = double(s.original_max_positions);
  const double factor = s.factor > 0 ? s.factor : double(c.max_positions) / original;
  if (s.factor == 0) s.factor = factor;
  if (s.attention_factor == 0) {
    s.attention_factor = factor <= 1.0 ? 1.0 : std::sqrt(1.0 + std::log(factor) / std::log(original));
    if (!std::isfinite(s.attention_factor) || !(float(s.attention_factor) > 0))
      raise<FormatError>("{}: the longrope attention factor sqrt(1 + ln({:g}) / ln({} {})) is not a finite positive "
                         "number; give {}.attention_factor",
                         r.source(), factor, original_key, s.original_max_positions, where);
  }
}

/// Completes yarn scaling (rope_scaling_of's, at `where`) for the config `c` read so far (max_positions =
/// max_position_embeddings): original_max_position_embeddings is max_position_embeddings when the scaling does not
/// give it. The context becomes factor · original_max_position_embeddings when the factor is above 1 and that is
/// longer (YaRN's extended context, as vLLM derives its max_model_len; transformers sets no limit); size_keys
/// names the keys then. Throws FormatError naming the factor when that context exceeds kMaxSize (2^31 − 1).
void yarn_context(const Reader& r, const char* where, ModelConfig& c) {
  RopeScaling& s = c.rope_scaling;
  if (s.original_max_positions == 0) s.original_max_positions = c.max_positions;
  const double extended = std::floor(s.factor * double(s.original_max_positions));
  if (s.factor > 1.0 && extended > double(c.max_positions)) {
    if (!(extended <= double(kMaxSize)))
      raise<FormatError>("{}: {}.factor {:g} × original_max_position_embeddings {} is a context of {:g} positions, "
                         "more than the {} kq allows (corrupt or mistyped factor?)",
                         r.source(), where, s.factor, s.original_max_positions, extended, kMaxSize);
    c.max_positions = int64_t(extended);
    c.size_keys.max_positions = fmt::format("{}.factor × original_max_position_embeddings", where);
  }
}

/// The flags of config.json's layer_types `types` (not null): true for "sliding_attention", false for
/// "full_attention". Throws FormatError for anything but an array of num_layers such strings.
std::vector<bool> layer_types_sliding(const Reader& r, const json* types, int64_t num_layers) {
  std::vector<bool> sliding(size_t(num_layers), false);
  if (!types->is_array() || int64_t(types->size()) != num_layers)
    raise<FormatError>("{}: key 'layer_types': expected an array of num_hidden_layers = {} strings, got {}",
                       r.source(), num_layers, io::json_excerpt(*types));
  for (size_t i = 0; i < types->size(); ++i) {
    const json& t = (*types)[i];
    sliding[i] = t.is_string() && t.get_ref<const std::string&>() == "sliding_attention";
    if (!sliding[i] && !(t.is_string() && t.get_ref<const std::string&>() == "full_attention"))
      raise<FormatError>("{}: layer_types[{}] is {} (supported: \"full_attention\", \"sliding_attention\")",
                         r.source(), i, io::json_excerpt(t));
  }
  return sliding;
}

/// Which of Qwen2's `num_layers` layers attend within the sliding window (one flag each, true: windowed):
/// Qwen2Config's layer_types (transformers >= 4.53) when given, "sliding_attention"; else the layers >=
/// max_window_layers (default 28). Qwen2Config gives a layer a window only when use_sliding_window is true (the
/// caller checked it). Throws FormatError for a max_window_layers that is not an integer >= 0, and a layer_types
/// that is not an array of num_layers "full_attention" / "sliding_attention" strings.
std::vector<bool> qwen2_sliding_layers(const Reader& r, int64_t num_layers) {
  const int64_t max_window_layers = r.count("max_window_layers", 28);
  const json* types = r.find("layer_types");
  std::vector<bool> sliding(size_t(num_layers), false);
  if (!types) {
    for (int64_t l = max_window_layers; l < num_layers; ++l) sliding[size_t(l)] = true;
    return sliding;
  }
  return layer_types_sliding(r, types, num_layers);
}

/// A soft-capping key (attn_logit_softcapping / final_logit_softcapping): absent or null: 0 (none), else a
/// positive number within float32's range, in which the cap is applied (FormatError naming the key otherwise:
/// 1e300 would be an infinite cap, NaN logits blamed on the weights). `fallback`: the value when absent
/// (Gemma2Config's 50 / 30), null always meaning none.
double softcap(const Reader& r, const char* key, double fallback) {
  if (r.is_null(key)) return 0.0;
  return r.positive_f32(key, r.find(key), fallback, "the soft-capping is applied");
}

/// The keys of GemmaConfig (model_type "gemma"), Gemma2Config ("gemma2") or Gemma3TextConfig ("gemma3_text")
/// beyond Llama's, into `c` (sizes and RoPE read), after transformers' modeling_gemma.py, modeling_gemma2.py and
/// modeling_gemma3.py:
/// - the GeGLU activation: hidden_activation (Gemma2Config's and Gemma3TextConfig's only activation key; default
///   "gelu_pytorch_tanh"); for gemma, hidden_activation when given, else "gelu_pytorch_tanh" whatever the legacy
///   hidden_act says (GemmaMLP of transformers 4.39 to 4.47; see ModelConfig's Gemma keys for >= 4.48);
/// - query_pre_attn_scalar (gemma2, gemma3_text: default 256; gemma: none, head_dim^−1/2 as GemmaAttention);
/// - sliding_window (gemma2, gemma3_text: default 4096, null: none) on the layers of layer_types, else gemma2's
///   even layers (Gemma2DecoderLayer.is_sliding = not bool(layer_idx % 2)) or all but gemma3_text's every
///   sliding_window_pattern-th (default 6); gemma has no window;
/// - gemma3_text's local RoPE θ (`local_theta`, from transformers 5's rope_parameters.sliding_attention, else
///   rope_local_base_freq, default 1e4);
/// - soft-capping: gemma2's attn_logit_softcapping (default 50) and final_logit_softcapping (default 30), null:
///   none (Gemma2Attention / Gemma2ForCausalLM apply them when not None); gemma3_text's
///   final_logit_softcapping (default null; Gemma3ForCausalLM applies it when not None);
/// - the Gemma flags: norm_offset and scale_embeddings always, post_norms for gemma2 and gemma3_text.
/// Throws FormatError naming the key for a soft-capping that is not null and not a positive number within
/// float32's range, a soft-capping key in a gemma config (GemmaForCausalLM has none: it would be ignored) or
/// gemma3_text's attn_logit_softcapping (transformers' Gemma3Attention does not apply it in every version),
/// use_bidirectional_attention true (EmbeddingGemma's encoder), a hidden_activation other than
/// gelu_pytorch_tanh / gelu_new / gelu, and a bad value.
void gemma_keys(const Reader& r, std::optional<double> local_theta, ModelConfig& c) {
  const bool gemma1 = c.arch == Arch::Gemma, gemma2 = c.arch == Arch::Gemma2;
  const std::string type = arch_name(c.arch);
  for (const char* key : {"final_logit_softcapping", "attn_logit_softcapping"}) {
    const json* v = r.find(key);
    if (!v) continue;
    if (gemma1)
      raise<FormatError>(
          "{}: key '{}' is {}: model_type 'gemma' (GemmaForCausalLM) has no soft-capping and would ignore it; "
          "is \"model_type\" meant to be \"gemma2\"?",
          r.source(), key, io::json_excerpt(*v));
    if (!gemma2 && std::string_view(key) == "attn_logit_softcapping")
      raise<FormatError>(
          "{}: key 'attn_logit_softcapping' is {}: not supported for gemma3_text (transformers' Gemma3Attention "
          "does not apply it in every version; gemma3_text models have it null)",
          r.source(), io::json_excerpt(*v));
  }
  if (gemma2) {
    c.attn_logit_softcapping = softcap(r, "attn_logit_softcapping", 50.0);  // Gemma2Config's defaults
    c.final_logit_softcapping = softcap(r, "final_logit_softcapping", 30.0);
  } else if (!gemma1) {
    c.final_logit_softcapping = softcap(r, "final_logit_softcapping", 0.0);
  }
  if (!gemma1 && r.boolean("use_bidirectional_attention", false))
    raise<FormatError>(
        "{}: key 'use_bidirectional_attention' is true (an encoder, as EmbeddingGemma's): kq runs "
        "causal language models only",
        r.source());
  // Gemma2Config and Gemma3TextConfig read no hidden_act; GemmaConfig's hidden_act is the legacy key that
  // hidden_activation overwrites (GemmaMLP, transformers 4.39 to 4.47: gelu_pytorch_tanh when it is None).
  c.activation = r.string("hidden_activation", "gelu_pytorch_tanh");
  if (c.activation != "gelu_pytorch_tanh" && c.activation != "gelu_new" && c.activation != "gelu")
    raise<FormatError>(
        "{}: hidden_activation '{}' is not supported for {} (supported: gelu_pytorch_tanh, "
        "gelu_new (the same tanh form), gelu)",
        r.source(), io::text_excerpt(c.activation), type);
  c.norm_offset = c.scale_embeddings = true;
  if (gemma1) return;  // no post norms, window or query_pre_attn_scalar
  c.post_norms = true;
  c.query_pre_attn_scalar = r.positive("query_pre_attn_scalar", 256.0);
  if (!gemma2)
    c.rope_local_theta = local_theta
                             ? *local_theta
                             : r.positive_f32("rope_local_base_freq", r.find("rope_local_base_freq"), 10000.0);
  c.sliding_window = r.is_null("sliding_window") ? 0 : r.size("sliding_window", 4096);
  if (const json* types = r.find("layer_types")) {
    c.sliding_layers = layer_types_sliding(r, types, c.num_layers);
  } else if (gemma2) {
    c.sliding_layers.assign(size_t(c.num_layers), false);
    for (int64_t l = 0; l < c.num_layers; l += 2) c.sliding_layers[size_t(l)] = true;
  } else {
    // Gemma3TextConfig: layer i is "sliding_attention" unless (i + 1) is a multiple of the pattern.
    const int64_t pattern = r.size("sliding_window_pattern", 6);
    c.sliding_layers.assign(size_t(c.num_layers), false);
    for (int64_t l = 0; l < c.num_layers; ++l) c.sliding_layers[size_t(l)] = (l + 1) % pattern != 0;
  }
  // Gemma2 has one RoPE table: without a window no layer differs from another.
  if (gemma2 && c.sliding_window == 0) c.sliding_layers.clear();
}

/// transformers 5's Gemma3 rope_parameters per layer type, {"full_attention": {...}, "sliding_attention":
/// {...}}: the "full_attention" object (the global layers' rope_type, rope_theta and scaling keys) is
/// returned for the generic reading, and the "sliding_attention" one's rope_theta put into `local_theta`; its
/// rope_type must be default (Gemma3's local layers take no scaling). nullptr when `rp` is not of that form.
/// Throws FormatError naming the key.
const json* gemma3_rope_parameters(const Reader& r, const json& rp, std::optional<double>& local_theta) {
  if (!rp.is_object() || (!rp.contains("full_attention") && !rp.contains("sliding_attention")))
    return nullptr;
  for (const auto& [key, value] : rp.items())
    if (key != "full_attention" && key != "sliding_attention")
      raise<FormatError>(
          "{}: rope_parameters.{}: expected only 'full_attention' and 'sliding_attention' (RoPE "
          "parameters per layer type)",
          r.source(), io::text_excerpt(key));
  const auto object = [&](const char* key) -> const json* {
    const auto it = rp.find(key);
    if (it == rp.end() || it->is_null()) return nullptr;
    if (!it->is_object())
      raise<FormatError>("{}: 'rope_parameters.{}' must be an object, got {}", r.source(), key,
                         io::json_excerpt(*it));
    return &*it;
  };
  if (const json* local = object("sliding_attention")) {
    for (const char* k : {"rope_type", "type"})
      if (const auto t = local->find(k); t != local->end() && !t->is_null() && *t != "default")
        raise<FormatError>(
            "{}: rope_parameters.sliding_attention.{} is {}: the sliding-window layers of "
            "gemma3_text take default RoPE (only rope_theta)",
            r.source(), k, io::json_excerpt(*t));
    if (const auto t = local->find("rope_theta"); t != local->end() && !t->is_null())
      local_theta = r.positive_f32("rope_parameters.sliding_attention.rope_theta", &*t, 0);
  }
  static const json kEmpty = json::object();
  const json* full = object("full_attention");
  return full ? full : &kEmpty;
}

/// A Llama config, or a Mistral one (MistralConfig's defaults; sliding_window), or a Qwen2 one (Qwen2Config's
/// defaults; q/k/v biases; use_sliding_window), or a Qwen3 one (Qwen3Config's defaults; q_norm / k_norm;
/// attention_bias; use_sliding_window as Qwen2's), or a Phi3 one (Phi3Config's defaults;
/// partial_rotary_factor; longrope; sliding_window as Mistral's, none when absent), or a Gemma, Gemma2 or
/// Gemma3 one (GemmaConfig's, Gemma2Config's or Gemma3TextConfig's defaults and gemma_keys). The largest RoPE
/// angle, position max_positions − 1 times the largest inverse frequency (max(1, θ^(−(dim−2)/dim)), dim =
/// rotary_dim, divided by a scaling factor below 1; longrope: the largest θ^(−2i/dim) / f_i over the short and
/// the long factors f), must
/// be finite as a float32, in which the tables are computed: a tiny rope_theta or factor within float32's range still overflows there (cos / sin
/// of inf: NaN logits, blamed on the weights; tester round 18b). Throws FormatError naming the keys.
void check_rope_angles(const Reader& r, const ModelConfig& c) {
  const double hd = double(rotary_dim_of(c));
  double inv_max = std::max(1.0, std::pow(c.rope_theta, -(hd - 2) / hd));
  const bool scaled = c.rope_scaling.type != RopeScaling::Type::Default;
  if (c.rope_scaling.type == RopeScaling::Type::LongRope) {
    inv_max = 0;
    for (const std::vector<double>* f : {&c.rope_scaling.short_factor, &c.rope_scaling.long_factor})
      for (size_t i = 0; i < f->size(); ++i)
        inv_max = std::max(inv_max, std::pow(c.rope_theta, -2.0 * double(i) / hd) / (*f)[i]);
  } else if (scaled) {
    inv_max /= std::min(1.0, c.rope_scaling.factor);
  }
  // Gemma3's local table (rope_local_theta, default frequencies) too.
  if (c.rope_local_theta > 0)
    inv_max = std::max(inv_max, std::max(1.0, std::pow(c.rope_local_theta, -(hd - 2) / hd)));
  const double angle = double(c.max_positions - 1) * inv_max;
  if (!(angle <= double(std::numeric_limits<float>::max())))
    raise<FormatError>("{}: RoPE angles overflow float32, in which the tables are computed: position {} ({} {}) "
                       "times the largest inverse frequency {:g} (rope_theta {:g}{}) is {:g}",
                       r.source(), c.max_positions - 1, c.size_keys.max_positions, c.max_positions, inv_max,
                       c.rope_theta, scaled ? fmt::format(", scaling factor {:g}", c.rope_scaling.factor) : "",
                       angle);
}

ModelConfig parse_llama(const Reader& r, Arch arch) {
  const bool mistral = arch == Arch::Mistral, qwen2 = arch == Arch::Qwen2, qwen3 = arch == Arch::Qwen3;
  const bool phi3 = arch == Arch::Phi3, gemma3 = arch == Arch::Gemma3;
  const bool gemma1 = arch == Arch::Gemma, gemma2 = arch == Arch::Gemma2;
  const bool gemma = gemma1 || gemma2 || gemma3;  // GemmaConfig, Gemma2Config, Gemma3TextConfig
  ModelConfig c;
  c.arch = arch;
  c.size_keys = {"num_hidden_layers", "hidden_size", "num_attention_heads", "max_position_embeddings"};
  c.hidden_size = r.size("hidden_size");
  c.intermediate_size = r.size("intermediate_size");
  c.num_layers = r.size("num_hidden_layers");
  c.num_heads = r.size("num_attention_heads");
  // MistralConfig: 8 when absent, Qwen2Config and Qwen3Config: 32 when absent, all three the query heads when
  // null; LlamaConfig: the query heads.
  const bool kv_absent = !r.find("num_key_value_heads") && !r.is_null("num_key_value_heads");
  const char* kv_default_of = !kv_absent ? nullptr
                              : mistral  ? "MistralConfig"
                              : qwen2    ? "Qwen2Config"
                              : qwen3    ? "Qwen3Config"
                              : gemma3   ? "Gemma3TextConfig"
                              : gemma1   ? "GemmaConfig"
                              : gemma2   ? "Gemma2Config"
                                         : nullptr;
  c.num_kv_heads = r.size("num_key_value_heads", !kv_default_of ? c.num_heads
                                                 : mistral      ? 8
                                                 : gemma3       ? 4
                                                 : gemma1       ? 16
                                                 : gemma2       ? 4
                                                                : 32);
  if (r.find("num_key_value_heads")) c.size_keys.num_kv_heads = "num_key_value_heads";
  c.vocab_size = r.size("vocab_size");
  c.max_positions = r.size("max_position_embeddings", mistral || gemma3 ? 4096 * 32
                                                      : qwen2 || qwen3  ? 32768
                                                      : phi3            ? 4096
                                                      : gemma           ? 8192  // GemmaConfig, Gemma2Config
                                                                        : 2048);
  c.norm_eps = r.epsilon("rms_norm_eps", phi3 ? 1e-5 : 1e-6);  // Phi3Config's default, the four others'
  c.tie_word_embeddings = r.boolean("tie_word_embeddings", gemma);  // the Gemma configs: tied
  // MistralConfig, Qwen2Config and Phi3Config have no attention_bias / mlp_bias, Qwen3Config no mlp_bias (the keys
  // are ignored): Mistral's and Phi3's projections never have biases; Qwen2's q/k/v_proj always have, its o_proj and
  // MLP never; Qwen3's MLP never. Qwen3's attention_bias is Llama's (q/k/v/o_proj).
  c.attention_bias = (arch == Arch::Llama || qwen3 || gemma) && r.boolean("attention_bias", false);
  c.mlp_bias = arch == Arch::Llama && r.boolean("mlp_bias", false);
  c.qkv_bias = qwen2;
  c.qk_norm = qwen3 || gemma3;  // Qwen3Attention's and Gemma3Attention's q_norm / k_norm, unconditional
  c.activation = gemma ? "silu" : r.string("hidden_act", "silu");  // Gemma: hidden_activation (gemma_keys)
  if (c.activation == "swish") c.activation = "silu";  // transformers' ACT2FN: the same function (x * sigmoid(x))
  if (c.activation != "silu")
    raise<FormatError>("{}: hidden_act '{}' is not supported for {} (supported: silu, or swish, its alias)",
                       r.source(), io::text_excerpt(c.activation), arch_name(c.arch));
  if (c.num_heads % c.num_kv_heads != 0)
    raise<FormatError>("{}: num_attention_heads {} is not a multiple of num_key_value_heads {}{}", r.source(),
                       c.num_heads, c.num_kv_heads,
                       kv_default_of ? fmt::format(" (absent: {}'s default)", kv_default_of) : std::string());
  if (r.find("head_dim")) {
    c.head_dim = r.size("head_dim");
    c.size_keys.head_dim = "head_dim";
  } else if (qwen3 || gemma) {
    // Qwen3Config's and the Gemma configs' defaults, whatever hidden_size / heads is.
    c.head_dim = qwen3 ? 128 : 256;
  } else {
    if (c.hidden_size % c.num_heads != 0)
      raise<FormatError>("{}: hidden_size {} is not divisible by num_attention_heads {} (and no head_dim given)",
                         r.source(), c.hidden_size, c.num_heads);
    c.head_dim = c.hidden_size / c.num_heads;
  }
  if (c.head_dim % 2 != 0)
    raise<FormatError>("{}: head_dim {} must be even for RoPE", r.source(), c.head_dim);

  // RoPE: transformers 4 keeps rope_theta / rope_scaling at the top level,
  // transformers 5 moves both into rope_parameters {rope_theta, rope_type}.
  std::optional<double> theta, local_theta;
  std::optional<RopeScaling> scaling;
  const char* scaling_key = "rope_scaling";
  if (const json* rs = r.find("rope_scaling")) scaling = rope_scaling_of(r, "rope_scaling", *rs, phi3);
  const json* rp = r.find("rope_parameters");
  const char* rp_key = "rope_parameters";
  if (const json* full = rp && gemma3 ? gemma3_rope_parameters(r, *rp, local_theta) : nullptr) {
    rp = full;
    rp_key = "rope_parameters.full_attention";
  }
  if (rp) {
    // transformers 4 reads only rope_scaling, transformers 5 replaces rope_parameters by it (gemma3_text:
    // updates full_attention with it): a type in rope_scaling wins. Two different scalings in one config are a
    // contradiction, refused as a rope_theta one is (tester 22); rope_parameters' "default", which transformers 5
    // writes for every model without scaling, is none (a rope_scaling added to such a config is read).
    const std::optional<RopeScaling> from_rp = rope_scaling_of(r, rp_key, *rp, phi3);
    if (scaling && from_rp && from_rp->type != RopeScaling::Type::Default && *scaling != *from_rp)
      raise<FormatError>("{}: rope_scaling {} conflicts with {} {} (transformers would use rope_scaling's; keep the "
                         "one the model was trained with)",
                         r.source(), io::json_excerpt(*r.find("rope_scaling")), rp_key, io::json_excerpt(*rp));
    if (!scaling) {
      scaling = from_rp;
      scaling_key = rp_key;
    }
    const auto it = rp->find("rope_theta");
    if (it != rp->end() && !it->is_null())
      theta = r.positive_f32(fmt::format("{}.rope_theta", rp_key), &*it, 0);
  }
  if (const json* top = r.find("rope_theta")) {
    const double t = r.positive_f32("rope_theta", top, 0);
    if (theta && *theta != t)
      raise<FormatError>("{}: rope_theta {} conflicts with {}.rope_theta {}", r.source(), t, rp_key, *theta);
    theta = t;
  }
  c.rope_theta = theta.value_or(gemma3 ? 1e6 : 10000.0);  // Gemma3TextConfig's default; LlamaConfig's
  c.rope_scaling = scaling.value_or(RopeScaling{});
  // Phi3 rotates only partial_rotary_factor · head_dim dimensions of each head (the rest pass unrotated). The other
  // architectures' modeling code rotates the whole head whatever the key says: refuse rather than compute another
  // model.
  if (phi3) {
    c.rotary_dim = phi3_rotary_dim(r, c.head_dim);
  } else {
    check_partial_rotary_factor(r, "partial_rotary_factor", r.find("partial_rotary_factor"));
    if (rp)
      if (const auto it = rp->find("partial_rotary_factor"); it != rp->end() && !it->is_null())
        check_partial_rotary_factor(r, fmt::format("{}.partial_rotary_factor", rp_key).c_str(), &*it);
  }
  if (c.rope_scaling.type == RopeScaling::Type::LongRope) longrope_context(r, scaling_key, c);
  if (c.rope_scaling.type == RopeScaling::Type::Yarn) yarn_context(r, scaling_key, c);
  // Mistral's (MistralConfig: 4096 when absent, none when null) and Phi3's (Phi3Config: none when absent or null)
  // window, on every layer. The context stays max_position_embeddings: the attention runs the window.
  if (mistral && !r.is_null("sliding_window")) c.sliding_window = r.size("sliding_window", 4096);
  if (phi3 && r.find("sliding_window")) c.sliding_window = r.size("sliding_window");
  // Qwen2's and Qwen3's (Qwen2Config, Qwen3Config: none unless use_sliding_window; then 4096 when absent, none
  // when null) on the layers layer_types / max_window_layers give it; none when no layer has it.
  if ((qwen2 || qwen3) && r.boolean("use_sliding_window", false) && !r.is_null("sliding_window")) {
    const int64_t window = r.size("sliding_window", 4096);
    std::vector<bool> layers = qwen2_sliding_layers(r, c.num_layers);
    if (std::find(layers.begin(), layers.end(), true) != layers.end()) {
      c.sliding_window = window;
      c.sliding_layers = std::move(layers);
    }
  }
  if (gemma) gemma_keys(r, local_theta, c);
  check_rope_angles(r, c);
  return c;
}

}  // namespace

ModelConfig parse_model_config(const json& j, const std::string& source) {
  if (!j.is_object()) raise<FormatError>("{}: config is not a JSON object", source);
  const std::string type = Reader(j, source, "").string("model_type", "");
  const Reader r(j, source, type);
  ModelConfig c;
  if (type == "gpt2") {
    c = parse_gpt2(r);
  } else if (type == "llama" || type == "mistral" || type == "qwen2" || type == "qwen3" || type == "phi3" ||
             type == "gemma3_text" || type == "gemma" || type == "gemma2") {
    c = parse_llama(r, type == "mistral"       ? Arch::Mistral
                       : type == "qwen2"       ? Arch::Qwen2
                       : type == "qwen3"       ? Arch::Qwen3
                       : type == "phi3"        ? Arch::Phi3
                       : type == "gemma3_text" ? Arch::Gemma3
                       : type == "gemma"       ? Arch::Gemma
                       : type == "gemma2"      ? Arch::Gemma2
                                               : Arch::Llama);
  } else if (type == "gemma3") {
    raise<FormatError>(
        "{}: model_type 'gemma3' is a multimodal Gemma3ForConditionalGeneration folder (text_config "
        "nested, weights under language_model.*), which kq does not load; kq runs model_type "
        "gemma3_text (Gemma3ForCausalLM, e.g. gemma-3-1b-it / -pt), gemma2 and gemma",
        source);
  } else if (type.empty()) {
    const auto it = j.find("model_type");
    raise<FormatError>("{}: {} (supported: gpt2, llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, gemma3_text)",
                       source, it != j.end() && it->is_null() ? "\"model_type\" is null" : "no \"model_type\"");
  } else {
    raise<FormatError>(
        "{}: unsupported model_type '{}' (supported: gpt2, llama, mistral, qwen2, qwen3, phi3, gemma, gemma2, "
        "gemma3_text)",
        source, io::text_excerpt(type));
  }
  // transformers 5 writes "dtype"; older versions "torch_dtype".
  c.torch_dtype = r.find("dtype") ? r.string("dtype", "") : r.string("torch_dtype", "");
  return c;
}

bool longrope_recomputes_cache(const ModelConfig& c, int64_t cached) {
  // transformers: input_ids.shape[1] >= original + 1 (the sequence with the new token) and past_length <= original
  // (the cache) hold together, one token at a time, only for past_length == original.
  return c.rope_scaling.type == RopeScaling::Type::LongRope && cached == c.rope_scaling.original_max_positions;
}

ModelConfig load_model_config(const std::filesystem::path& model_dir) {
  io::check_not_staging_folder(model_dir);  // an unfinished kq quantize output may lack files written last
  const std::filesystem::path file = model_dir / "config.json";
  const json j = io::load_hf_json_file(file, 16u << 20);  // a BOM: transformers' json.load refuses it
  return parse_model_config(j, file.string());
}

}  // namespace kq
