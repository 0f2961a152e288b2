#include "models/common.hpp"

#include <cmath>
#include <cstring>
#include <limits>

#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kq/error.hpp"

namespace kq::models {

namespace {
/// The checks of parse_model_config on a RopeScaling built in code (finite positive factors, a positive
/// original context, high_freq_factor != low_freq_factor for llama3; longrope: `rotary_dim`/2 finite positive
/// short and long factors, a finite positive attention factor; yarn: finite positive betas and attention factor).
template <class E>
void check_rope_scaling(const RopeScaling& s, int64_t rotary_dim, const std::string& where) {
  using T = RopeScaling::Type;
  if (s.type == T::Default) return;
  if (s.type != T::Linear && s.type != T::Llama3 && s.type != T::LongRope && s.type != T::Yarn &&
      s.type != T::Dynamic)
    raise<E>("{}: RopeScaling::type {} is not a RoPE scaling type (default, linear, llama3, longrope, yarn or "
             "dynamic)",
             where, int(s.type));
  const auto positive = [&](const char* key, double v) {
    if (!std::isfinite(v) || v <= 0)
      raise<E>("{}: rope scaling {} {} must be a finite positive number", where, key, v);
  };
  if (s.type == T::LongRope) {
    for (const auto& [key, list] :
         {std::pair{"short_factor", &s.short_factor}, std::pair{"long_factor", &s.long_factor}}) {
      if (int64_t(list->size()) != rotary_dim / 2)
        raise<E>("{}: rope scaling {} has {} values, expected rotary_dim / 2 = {}", where, key, list->size(),
                 rotary_dim / 2);
      for (double v : *list) positive(key, v);
    }
    positive("attention_factor", s.attention_factor);
    if (s.original_max_positions < 1)
      raise<E>("{}: rope scaling original_max_position_embeddings {} must be positive", where,
               s.original_max_positions);
    return;
  }
  positive("factor", s.factor);
  if (s.type == T::Linear || s.type == T::Dynamic) return;
  if (s.type == T::Yarn) {
    positive("beta_fast", s.beta_fast);
    positive("beta_slow", s.beta_slow);
    positive("attention_factor", s.attention_factor);
    if (s.original_max_positions < 1)
      raise<E>("{}: rope scaling original_max_position_embeddings {} must be positive", where,
               s.original_max_positions);
    return;
  }
  positive("low_freq_factor", s.low_freq_factor);
  positive("high_freq_factor", s.high_freq_factor);
  if (s.original_max_positions < 1)
    raise<E>("{}: rope scaling original_max_position_embeddings {} must be positive", where,
             s.original_max_positions);
  if (s.high_freq_factor == s.low_freq_factor)
    raise<E>("{}: rope scaling high_freq_factor {} equals low_freq_factor (llama3 divides by their difference)",
             where, s.high_freq_factor);
}

template <class E>
void check_config_as(const ModelConfig& c, const std::string& where) {
  if (c.arch != Arch::GPT2 && c.arch != Arch::Llama && c.arch != Arch::Mistral && c.arch != Arch::Qwen2 &&
      c.arch != Arch::Qwen3 && c.arch != Arch::Phi3 && c.arch != Arch::Gemma3 && c.arch != Arch::Gemma &&
      c.arch != Arch::Gemma2)
    raise<E>(
        "{}: ModelConfig::arch {} is not an Arch (gpt2, llama, mistral, qwen2, qwen3, phi3, gemma3_text, gemma "
        "or gemma2)",
        where, int(c.arch));
  const std::pair<const char*, int64_t> sizes[] = {{"vocab_size", c.vocab_size},
                                                   {"hidden_size", c.hidden_size},
                                                   {"intermediate_size", c.intermediate_size},
                                                   {"num_layers", c.num_layers},
                                                   {"num_heads", c.num_heads},
                                                   {"num_kv_heads", c.num_kv_heads},
                                                   {"head_dim", c.head_dim},
                                                   {"max_positions", c.max_positions}};
  for (const auto& [key, v] : sizes)
    if (v < 1 || v > (int64_t(1) << 31)) raise<E>("{}: {} = {} is not a valid size", where, key, v);
  if (c.num_heads % c.num_kv_heads != 0)
    raise<E>("{}: num_heads {} is not a multiple of num_kv_heads {}", where, c.num_heads, c.num_kv_heads);
  if (!(c.norm_eps > 0)) raise<E>("{}: norm epsilon {} must be positive", where, c.norm_eps);
  // Soft-capping divides by the cap, in float32: 0 is none, a negative, NaN or infinite cap garbage, and so is one
  // finite as a double but not as a float32 (1e300: inf · tanh(x / inf) = NaN; 1e-300: a cap of 0).
  for (const auto& [key, v] : {std::pair{"attn_logit_softcapping", c.attn_logit_softcapping},
                               std::pair{"final_logit_softcapping", c.final_logit_softcapping}})
    if (!std::isfinite(v) || v < 0 ||
        (v > 0 && (!std::isfinite(float(v)) || float(v) < std::numeric_limits<float>::min())))
      raise<E>("{}: {} {} must be 0 (none) or a positive number within float32's range ({} to {}), in which the "
               "cap is applied",
               where, key, v, std::numeric_limits<float>::min(), std::numeric_limits<float>::max());
  if (c.sliding_window < 0)
    raise<E>("{}: sliding_window {} must be positive (0: none)", where, c.sliding_window);
  if (!c.sliding_layers.empty() && int64_t(c.sliding_layers.size()) != c.num_layers)
    raise<E>("{}: sliding_layers has {} flags, expected none (every layer) or one per layer (num_layers = {})",
             where, c.sliding_layers.size(), c.num_layers);
  if (c.arch == Arch::GPT2) {
    if (c.num_kv_heads != c.num_heads)
      raise<E>("{}: GPT-2 has num_kv_heads = num_heads, got {} and {}", where, c.num_kv_heads, c.num_heads);
    if (c.hidden_size != c.num_heads * c.head_dim)
      raise<E>("{}: GPT-2 hidden_size {} != num_heads {} × head_dim {}", where, c.hidden_size, c.num_heads,
               c.head_dim);
    if (c.qk_norm) raise<E>("{}: GPT-2 has no q_norm / k_norm (ModelConfig::qk_norm must be false)", where);
    if (c.norm_offset || c.post_norms || c.scale_embeddings || c.rope_local_theta != 0 ||
        c.query_pre_attn_scalar != 0)
      raise<E>(
          "{}: GPT-2 has none of Gemma's norm_offset, post_norms, scale_embeddings, rope_local_theta and "
          "query_pre_attn_scalar (they must be false / 0)",
          where);
    if (c.activation != "gelu_new" && c.activation != "gelu_pytorch_tanh" && c.activation != "gelu")
      raise<Unsupported>("{}: GPT-2 activation '{}' is not supported (gelu_new, gelu_pytorch_tanh, gelu)",
                         where, c.activation);
  } else {
    if (c.head_dim % 2 != 0) raise<E>("{}: head_dim {} must be even for RoPE", where, c.head_dim);
    if (c.rotary_dim != 0 && (c.rotary_dim < 2 || c.rotary_dim % 2 != 0 || c.rotary_dim > c.head_dim))
      raise<E>("{}: rotary_dim {} must be even, at least 2 and at most head_dim {} (0: head_dim)", where,
               c.rotary_dim, c.head_dim);
    if (!(c.rope_theta > 0)) raise<E>("{}: rope_theta {} must be positive", where, c.rope_theta);
    check_rope_scaling<E>(c.rope_scaling, rotary_dim_of(c), where);
    if (!(c.rope_local_theta >= 0) || !std::isfinite(c.rope_local_theta))
      raise<E>("{}: rope_local_theta {} must be finite and positive (0: none)", where, c.rope_local_theta);
    if (!(c.query_pre_attn_scalar >= 0) || !std::isfinite(c.query_pre_attn_scalar))
      raise<E>("{}: query_pre_attn_scalar {} must be finite and positive (0: head_dim)", where,
               c.query_pre_attn_scalar);
    if (c.arch == Arch::Gemma3 || c.arch == Arch::Gemma || c.arch == Arch::Gemma2) {
      if (c.activation != "gelu_pytorch_tanh" && c.activation != "gelu_new" && c.activation != "gelu")
        raise<Unsupported>("{}: {} activation '{}' is not supported (gelu_pytorch_tanh, gelu_new, gelu)", where,
                           arch_name(c.arch), c.activation);
    } else if (c.activation != "silu")
      raise<Unsupported>("{}: {} activation '{}' is not supported (silu)", where,
                         c.arch == Arch::Mistral ? "Mistral"
                         : c.arch == Arch::Qwen2 ? "Qwen2"
                         : c.arch == Arch::Qwen3 ? "Qwen3"
                         : c.arch == Arch::Phi3  ? "Phi3"
                                                 : "Llama",
                         c.activation);
  }
}
}  // namespace

void check_config(const ModelConfig& c, const std::string& where, bool from_file) {
  if (from_file)
    check_config_as<FormatError>(c, where);
  else
    check_config_as<InvalidArgument>(c, where);
}

void store_kv(KVCache& cache, int64_t layer, int64_t pos0, int64_t n, const float* k, const float* v,
              int64_t row_stride) {
  const int64_t hd = cache.head_dim(), cap = cache.capacity();
  float* K = cache.keys(layer);
  float* V = cache.values(layer);
  for (int64_t g = 0; g < cache.num_kv_heads(); ++g)
    for (int64_t i = 0; i < n; ++i) {
      std::memcpy(K + (g * cap + pos0 + i) * hd, k + i * row_stride + g * hd, size_t(hd) * sizeof(float));
      std::memcpy(V + (g * cap + pos0 + i) * hd, v + i * row_stride + g * hd, size_t(hd) * sizeof(float));
    }
}

void add_inplace(float* x, const float* y, int64_t n, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= (1 << 16) && threads > 1)
  for (int64_t i = 0; i < n; ++i) x[i] += y[i];
}

void softcap_inplace(float* x, int64_t n, float cap, int threads) {
#pragma omp parallel for num_threads(threads) schedule(static) if (n >= (1 << 16) && threads > 1)
  for (int64_t i = 0; i < n; ++i) x[i] = cap * std::tanh(x[i] / cap);
}

std::unique_ptr<Linear> make_dense_lm_head(Tensor weight, DType disk_dtype) {
  if (weight.dtype() == DType::BF16 || weight.dtype() == DType::F16) return make_linear_w16(std::move(weight));
  return make_linear_f32(std::move(weight), Tensor(), disk_dtype);
}

}  // namespace kq::models
