#pragma once
// Model hyper-parameters, read from a Hugging Face config.json.
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

namespace kq {

/// Supported architectures (config.json "model_type"). Mistral is the Llama
/// architecture (same tensor names) with MistralConfig's defaults and
/// sliding-window attention (ModelConfig::sliding_window). Qwen2 (Qwen2 and
/// Qwen2.5) is the Llama architecture with biases on q/k/v_proj
/// (ModelConfig::qkv_bias) and Qwen2Config's defaults. Qwen3 (the dense
/// Qwen3ForCausalLM models) is the Llama architecture with an RMSNorm over
/// each query and key head before RoPE (ModelConfig::qk_norm), no biases by
/// default and Qwen3Config's defaults. Phi3 (Phi3ForCausalLM: Phi-3, Phi-3.5
/// and Phi-4-mini) is the Llama architecture whose checkpoints fuse q/k/v_proj
/// into self_attn.qkv_proj and gate/up_proj into mlp.gate_up_proj (split at
/// load), with RoPE over the first ModelConfig::rotary_dim dimensions of each
/// head (partial_rotary_factor) and "longrope" RoPE scaling. Gemma3 (model_type "gemma3_text",
/// Gemma3ForCausalLM: the Gemma 3 text models, e.g. gemma-3-1b) is the Llama architecture with Qwen3's q_norm
/// / k_norm, RMSNorm gains stored as offsets from 1 (ModelConfig::norm_offset), a norm on each sub-layer's
/// output before its residual add (ModelConfig::post_norms), a GeGLU MLP (activation "gelu_pytorch_tanh"),
/// embeddings scaled by sqrt(hidden_size) (ModelConfig::scale_embeddings), an attention scale of
/// query_pre_attn_scalar^-1/2, and sliding-window layers with their own RoPE base
/// (ModelConfig::rope_local_theta). Gemma (model_type "gemma", GemmaForCausalLM: Gemma 1, e.g. gemma-2b / 7b)
/// is the Llama architecture with Gemma 3's (1 + w) RMSNorm gains, GeGLU MLP and scaled embeddings, and none of
/// its post norms, q_norm / k_norm or sliding windows. Gemma2 (model_type "gemma2", Gemma2ForCausalLM: e.g.
/// gemma-2-2b / 9b / 27b) is Gemma with Gemma 3's post norms, query_pre_attn_scalar and a sliding window on
/// every other layer (one RoPE table, no q_norm / k_norm), plus tanh soft-capping of the attention scores and
/// of the logits (ModelConfig::attn_logit_softcapping, final_logit_softcapping).
enum class Arch { GPT2, Llama, Mistral, Qwen2, Qwen3, Phi3, Gemma3, Gemma, Gemma2 };

/// Lower-case config.json model_type: "gpt2" / "llama" / "mistral" / "qwen2" / "qwen3" / "phi3" /
/// "gemma3_text" / "gemma" / "gemma2"; "unknown(N)" for a value outside the enum (see dtype_name).
std::string arch_name(Arch a);

/// RoPE frequency scaling: config.json "rope_scaling" (transformers 4: {"rope_type" or "type", ...}) or
/// "rope_parameters" (transformers 5: {"rope_type", "rope_theta", ...}), computed as transformers'
/// ROPE_INIT_FUNCTIONS do (modeling_rope_utils.py). It changes the inverse frequencies
/// inv_freq_i = θ^(−2i/dim) (i < dim/2, rad per position, dim = ModelConfig::rotary_dim or head_dim) of every head;
/// cos/sin are rescaled by attention_factor (1 but for LongRope). Built by cpu::rope_inv_freq.
struct RopeScaling {
  enum class Type {
    Default,  ///< "default" or absent: inv_freq unchanged
    Linear,   ///< "linear" (position interpolation, Chen et al. 2023): inv_freq / factor
    /// "llama3" (Llama 3.1 / 3.2; transformers' _compute_llama3_parameters), by wavelength 2π/inv_freq:
    /// > original_max_positions/low_freq_factor: inv_freq/factor; < original_max_positions/high_freq_factor:
    /// unchanged; between: s = (original_max_positions/wavelength − low_freq_factor) /
    /// (high_freq_factor − low_freq_factor), inv_freq·((1−s)/factor + s).
    Llama3,
    /// "longrope" (or "su", its old name; Phi-3 / Phi-3.5 / Phi-4-mini, transformers'
    /// _compute_longrope_parameters): inv_freq_i / short_factor_i for a forward pass whose sequence ends within
    /// original_max_positions, inv_freq_i / long_factor_i for every position of a pass that ends past it
    /// (dynamic_rope_update), cos/sin times attention_factor in both. Keys already in the KV cache keep the
    /// rotation they were stored with (Model::forward; kq generate recomputes the sequence when it first grows
    /// past original_max_positions, as transformers' generate() does).
    LongRope,
    /// "yarn" (YaRN, Peng et al. 2023; transformers' _compute_yarn_parameters, e.g. Qwen2.5 / Qwen3 beyond 32K):
    /// per pair i, a blend of inv_freq_i (extrapolation) and inv_freq_i / factor (interpolation) by a linear ramp
    /// over the pairs between the correction dims of beta_fast and beta_slow rotations in original_max_positions
    /// (floor / ceil when truncate), and cos/sin times attention_factor.
    Yarn,
    /// "dynamic" (dynamic NTK): transformers changes the base only for sequences longer than
    /// max_position_embeddings, which kq's context never exceeds: the default frequencies.
    Dynamic,
  };
  Type type = Type::Default;
  /// Linear, Llama3, Yarn, Dynamic: finite, > 0. LongRope: the "factor" key when given (as transformers 5; 4.x
  /// ignores it), else max_position_embeddings / original_max_positions (read for the attention factor only).
  double factor = 1.0;
  double low_freq_factor = 1.0;           ///< Llama3: finite, > 0
  double high_freq_factor = 4.0;          ///< Llama3: finite, > 0, != low_freq_factor
  /// Llama3, LongRope, Yarn: original_max_position_embeddings, >= 1 (LongRope: the context the short factors
  /// serve; Yarn: the pretrained context, the key else max_position_embeddings)
  int64_t original_max_positions = 8192;
  double beta_fast = 32.0;  ///< Yarn: rotations at the ramp's high-frequency end (finite, > 0; 32 when absent)
  double beta_slow = 1.0;   ///< Yarn: rotations at the ramp's low-frequency end (finite, > 0; 1 when absent)
  bool truncate = true;     ///< Yarn: the correction dims rounded outward (floor / ceil) to whole pairs
  /// LongRope: short_factor and long_factor, rotary_dim/2 finite positive values each (see Type::LongRope).
  std::vector<double> short_factor, long_factor;
  /// LongRope: the factor cos and sin are multiplied by (finite, > 0): "attention_factor" when given, else
  /// sqrt(1 + ln(f) / ln(original_max_positions)) with f = "factor" when given, else max_position_embeddings /
  /// original_max_positions (1 when f <= 1), as transformers computes it. Yarn: "attention_factor" when given,
  /// else mscale(factor, mscale) / mscale(factor, mscale_all_dim) when both keys are given, else mscale(factor, 1),
  /// with mscale(s, m) = 0.1·m·ln(s) + 1 (1 when s <= 1). 1 for the other types.
  double attention_factor = 1.0;
  bool operator==(const RopeScaling&) const = default;
};

/// The config.json rope_type of `t`: "default" / "linear" / "llama3" / "longrope" / "yarn" / "dynamic";
/// "unknown(N)" outside the enum.
std::string rope_type_name(RopeScaling::Type t);

/// Architecture hyper-parameters in one neutral form for both families.
/// GPT-2 keys map as: n_layer -> num_layers, n_embd -> hidden_size, n_head ->
/// num_heads (= num_kv_heads), n_positions (else n_ctx) -> max_positions,
/// n_inner (or 4·n_embd; intermediate_size is not read, as in transformers)
/// -> intermediate_size, layer_norm_epsilon -> norm_eps,
/// activation_function -> activation ("gelu_new", "gelu_pytorch_tanh" — both
/// the tanh approximation — or "gelu", the exact erf form).
/// GPT2Config.attribute_map's aliases num_hidden_layers, hidden_size,
/// num_attention_heads and max_position_embeddings are accepted for n_layer,
/// n_embd, n_head and n_positions; a config giving both names different
/// values is refused (transformers silently takes the alias).
/// Llama keys: hidden_size, intermediate_size, num_hidden_layers,
/// num_attention_heads, num_key_value_heads (default = heads), head_dim,
/// max_position_embeddings (default 2048), rms_norm_eps (default 1e-6),
/// rope_theta (top level or rope_parameters.rope_theta, default 10000),
/// rope_scaling / rope_parameters (RopeScaling: "default", "linear",
/// "llama3", "yarn" or "dynamic"; yarn's factor · original_max_position_embeddings
/// becomes max_positions when longer; a type in rope_scaling wins over rope_parameters', as in
/// transformers 4, which reads only rope_scaling, and 5, which replaces
/// rope_parameters by it),
/// hidden_act (must be "silu", or "swish": transformers' alias, read as
/// "silu"), tie_word_embeddings (default false).
/// Mistral keys: Llama's, with MistralConfig's defaults where they differ:
/// num_key_value_heads 8 (null: = heads), max_position_embeddings 131072
/// (4096·32); no attention_bias / mlp_bias (never biases); sliding_window
/// (default 4096, null: none): every layer's query at position i attends to
/// the keys at positions i − sliding_window < j <= i only (ModelConfig::
/// sliding_window); max_positions stays max_position_embeddings.
/// Qwen2 keys: Llama's, with Qwen2Config's defaults where they differ:
/// num_key_value_heads 32 (null: = heads), max_position_embeddings
/// 32768; no attention_bias / mlp_bias: q/k/v_proj always have biases
/// (qkv_bias), o_proj and the MLP never; use_sliding_window (default false),
/// sliding_window (default 4096, null: none), max_window_layers (default 28)
/// and layer_types (transformers >= 4.53; absent or null: layers >=
/// max_window_layers are "sliding_attention"). Layers whose type is
/// "sliding_attention" attend to the last sliding_window positions when
/// use_sliding_window is true (the released Qwen2 / Qwen2.5 models: false,
/// no window); ModelConfig::sliding_layers marks them, the other layers
/// attend to every earlier position. When no layer has the window,
/// sliding_window is 0.
/// Qwen3 keys: Llama's, with Qwen3Config's defaults where they differ:
/// num_key_value_heads 32 (null: = heads), head_dim 128 (absent or null; not
/// hidden_size / heads, and num_attention_heads · head_dim may differ from
/// hidden_size), max_position_embeddings 32768; attention_bias (default
/// false: biases on q/k/v/o_proj as Llama's), no mlp_bias (never MLP
/// biases); q_norm / k_norm always (qk_norm); use_sliding_window,
/// sliding_window, max_window_layers and layer_types as Qwen2's.
/// Phi3 keys: Llama's, with Phi3Config's defaults where they differ: rms_norm_eps 1e-5, max_position_embeddings
/// 4096, original_max_position_embeddings 4096; no attention_bias / mlp_bias (never biases); partial_rotary_factor
/// (top level or in rope_parameters; default 1, in (0, 1]): rotary_dim = int(head_dim · factor), even and >= 2;
/// rope_scaling type "longrope" (or "su") with short_factor / long_factor (rotary_dim/2 finite positive numbers
/// each), optional factor / attention_factor and original_max_position_embeddings (in rope_scaling, else the
/// top-level key): the short factors serve sequences up to original_max_position_embeddings, the long ones longer
/// sequences, up to max_position_embeddings (RopeScaling::Type::LongRope). factor and the scaling's
/// original_max_position_embeddings are read as transformers 5 reads them; transformers 4.x ignores factor whenever
/// the config has original_max_position_embeddings (Phi3Config always has it) and reads only the top-level
/// original_max_position_embeddings (see RopeScaling::factor). Released Phi-3 configs have no factor and give the
/// key at the top level only, so the versions differ only on hand-edited or converted configs.
/// sliding_window (default null: none): every layer's window, as Mistral's. "longrope" and a partial_rotary_factor
/// other than 1 are refused for the other model types.
/// Gemma3 keys (model_type "gemma3_text"): Llama's, with Gemma3TextConfig's defaults where they differ:
/// num_key_value_heads 4, head_dim 256 (absent or null), max_position_embeddings 131072, rope_theta 1e6,
/// tie_word_embeddings true; attention_bias (Llama's: q/k/v/o_proj), no mlp_bias; hidden_activation (default
/// "gelu_pytorch_tanh"; "gelu_new", the same function, and "gelu", the exact erf form, are accepted;
/// hidden_act is not read, as in transformers); query_pre_attn_scalar (default 256; the attention scale is
/// its −1/2 power); sliding_window (default 4096; null: none) on the layers layer_types marks
/// "sliding_attention", else every layer but each sliding_window_pattern-th (default 6: layers 5, 11, ... are
/// global); rope_local_base_freq (default 1e4): the RoPE θ of the sliding layers, which take no rope_scaling
/// (rope_theta and rope_scaling are the global layers'); transformers 5's rope_parameters {"full_attention":
/// {...}, "sliding_attention": {...}} is read the same way. q_norm / k_norm always; every RMSNorm multiplies
/// by (1 + weight) (norm_offset), post_attention_layernorm and post_feedforward_layernorm norm the sub-layer
/// outputs and pre_feedforward_layernorm is the MLP's input norm (post_norms); embeddings times
/// sqrt(hidden_size) (scale_embeddings); final_logit_softcapping and attn_logit_softcapping (default null:
/// none) as Gemma2's. Refused, naming the key: use_bidirectional_attention true. model_type "gemma3" (the
/// multimodal Gemma3ForConditionalGeneration folders, text_config nested) is refused naming gemma3_text.
/// Gemma keys (model_type "gemma", GemmaConfig): Llama's, with GemmaConfig's defaults where they differ:
/// num_key_value_heads 16, head_dim 256 (absent or null), max_position_embeddings 8192, tie_word_embeddings
/// true; attention_bias (q/k/v/o_proj), no mlp_bias; the attention scale head_dim^−1/2. The GeGLU activation is
/// hidden_activation ("gelu_pytorch_tanh", "gelu_new" or "gelu") when given, else "gelu_pytorch_tanh" whatever
/// hidden_act says: GemmaConfig documents hidden_act as legacy, overwritten by hidden_activation, and
/// transformers 4.39 to 4.47 (GemmaMLP, after transformers PR 29402) ignore it so, which is the tanh GELU the
/// models were trained with; transformers >= 4.48 reads hidden_act instead, which differs (the exact erf GELU)
/// only for the early gemma-2b / 7b configs that say hidden_act "gelu". norm_offset and scale_embeddings as
/// Gemma3's; no post_norms, q_norm / k_norm, sliding window or soft-capping (a soft-capping key that is not
/// null is refused: GemmaForCausalLM would ignore it).
/// Gemma2 keys (model_type "gemma2", Gemma2Config): Gemma's, with Gemma2Config's defaults where they differ:
/// num_key_value_heads 4; hidden_activation (default "gelu_pytorch_tanh"; hidden_act is not read);
/// query_pre_attn_scalar (default 256; the attention scale is its −1/2 power); sliding_window (default 4096;
/// null: none) on the layers layer_types marks "sliding_attention", else the even layers (0, 2, ...:
/// Gemma2DecoderLayer.is_sliding = not layer_idx % 2); one RoPE table (rope_theta, rope_scaling) for every
/// layer; attn_logit_softcapping (default 50) and final_logit_softcapping (default 30): null means none,
/// otherwise a finite positive number (attn_logit_softcapping, final_logit_softcapping); norm_offset,
/// post_norms and scale_embeddings as Gemma3's.
/// Every size is a positive integer <= 2^31-1.
struct ModelConfig {
  Arch arch = Arch::GPT2;
  int64_t vocab_size = 0;
  int64_t hidden_size = 0;        ///< d_model
  int64_t intermediate_size = 0;  ///< FFN inner width
  int64_t num_layers = 0;
  int64_t num_heads = 0;          ///< query heads
  int64_t num_kv_heads = 0;       ///< key/value heads (GQA when < num_heads)
  int64_t head_dim = 0;           ///< from config "head_dim" when present, else hidden/heads
  int64_t max_positions = 0;      ///< context length (n_positions / max_position_embeddings)
  double norm_eps = 1e-5;         ///< LayerNorm / RMSNorm epsilon
  double rope_theta = 10000.0;    ///< Llama / Mistral / Qwen2 / Qwen3 / Phi3 / Gemma3 only
  /// Gemma3's rope_local_base_freq: the RoPE θ of the sliding-window layers (those sliding_layers marks,
  /// every layer when it is empty), which use the default frequencies (no rope_scaling); 0: every layer uses
  /// rope_theta and rope_scaling.
  double rope_local_theta = 0.0;
  /// Gemma3's query_pre_attn_scalar: attention scores are scaled by query_pre_attn_scalar^−1/2 (finite, > 0);
  /// 0: by head_dim^−1/2.
  double query_pre_attn_scalar = 0.0;
  /// tanh soft-capping of the attention scores (Gemma 2's attn_logit_softcapping; finite, >= 0; 0: none): every
  /// score s = scale · q·k becomes c · tanh(s / c) with c = attn_logit_softcapping, after the scaling and before
  /// the causal / sliding-window mask and the softmax (transformers' Gemma2 eager_attention_forward), in
  /// prefill and decode alike, on the CPU and CUDA. Every architecture reads it.
  double attn_logit_softcapping = 0.0;
  /// tanh soft-capping of the logits (Gemma 2's final_logit_softcapping; finite, >= 0; 0: none): every logit z
  /// the model returns (Model::forward, decode_batch, so generate, eval's perplexity / KL, bench and the API)
  /// is c · tanh(z / c) with c = final_logit_softcapping (Gemma2ForCausalLM.forward), applied to the host
  /// logits on either device. Every architecture reads it.
  double final_logit_softcapping = 0.0;
  /// Llama architectures: RoPE rotates the first rotary_dim dimensions of each head (rotate_half within them:
  /// pairs (i, i + rotary_dim/2)) and passes the rest through; 0 (a config built in code) or head_dim: the whole
  /// head. Phi3's partial_rotary_factor sets it.
  int64_t rotary_dim = 0;
  /// Mistral's, Qwen2's, Qwen3's or Phi3's attention window in positions (0: none): in a layer that has it, the
  /// query at position i attends to the keys at positions j with i − sliding_window < j <= i (transformers'
  /// sliding_window_causal mask: the last sliding_window positions, its own included). It may exceed
  /// max_positions (then it changes nothing). Which layers have it: sliding_layers (layer_window).
  int64_t sliding_window = 0;
  /// The layers that attend within sliding_window: empty: every layer (Mistral, Phi3, and a config built in
  /// code that leaves it empty); else one flag per layer (num_layers), true for a windowed layer (Qwen2,
  /// Qwen3: layer_types' "sliding_attention", else the layers >= max_window_layers; Gemma3: layer_types, else
  /// sliding_window_pattern). Gemma3 keeps the flags when sliding_window is 0 (null): they choose the RoPE
  /// table.
  std::vector<bool> sliding_layers;
  RopeScaling rope_scaling;       ///< Llama architectures only: RoPE frequency scaling (Type::Default: none)
  bool tie_word_embeddings = true;
  bool attention_bias = false;    ///< attention projections have biases (Llama q/k/v/o; always true for GPT-2)
  /// Llama architectures: q/k/v_proj have biases even without attention_bias, o_proj only with it (always true
  /// for Qwen2, whose o_proj has none; false for the others). GPT-2: unused (attention_bias covers c_attn).
  bool qkv_bias = false;
  /// Llama architectures: every layer has q_norm and k_norm (F32 [head_dim] gains), an RMSNorm (eps norm_eps)
  /// over each query and key head after q_proj / k_proj and before RoPE; values are not normed (always true
  /// for Qwen3 and Gemma3, false for the others). GPT-2: must be false.
  bool qk_norm = false;
  bool mlp_bias = false;          ///< MLP projections have biases (Llama config key; always true for GPT-2)
  /// Llama architectures (true for Gemma3): every RMSNorm gain (input / post-attention / pre- and
  /// post-feedforward / final / q_norm / k_norm) is stored as w and multiplies by (1 + w), computed in F32 as
  /// transformers' Gemma3RMSNorm does; the loader holds 1 + w (exact in F32), the folders keep w. GPT-2: must
  /// be false.
  bool norm_offset = false;
  /// Llama architectures (true for Gemma3): "sandwich" norms: the attention output is RMS-normed by
  /// post_attention_layernorm before its residual add, the MLP input by pre_feedforward_layernorm, and the
  /// MLP output by post_feedforward_layernorm before its residual add (Llama's post_attention_layernorm is
  /// the MLP's input norm). GPT-2: must be false.
  bool post_norms = false;
  /// Llama architectures (true for Gemma3): the token embeddings are multiplied by sqrt(hidden_size) after
  /// the lookup, that factor rounded to the embedding table's dtype on disk (BF16 / F16 / F32) as
  /// transformers casts it to the weights' dtype; the product is kept in F32. GPT-2: must be false.
  bool scale_embeddings = false;
  /// GPT-2 "gelu_new" or "gelu_pytorch_tanh" (tanh approximation) or "gelu" (exact erf); Llama "silu"; Gemma3
  /// the gate activation of its GeGLU MLP: "gelu_pytorch_tanh" (the tanh form; "gelu_new" is read as it) or
  /// "gelu".
  std::string activation = "gelu_new";
  std::string torch_dtype;        ///< config "dtype" (transformers 5) or "torch_dtype": "float32", "bfloat16", ...; may be empty
  /// The config.json keys num_layers, hidden_size, num_heads and
  /// max_positions were read from, as the file writes them, for messages that
  /// name them: GPT-2's "n_layer", "n_embd", "n_head", "n_positions", or the
  /// attribute_map alias the file gives instead ("num_hidden_layers",
  /// "hidden_size", "num_attention_heads", "max_position_embeddings"; "n_ctx"
  /// for a context given by neither); Llama's own names. head_dim and
  /// num_kv_heads: "head_dim" / "num_key_value_heads" when config.json gives
  /// the key (not null), empty when the size is a default (hidden_size /
  /// heads, Qwen3Config's 128; the query heads, MistralConfig's 8, ...) or
  /// GPT-2's. Set by parse_model_config; empty in a config built in code.
  struct SizeKeys {
    std::string num_layers, hidden_size, num_heads, max_positions;
    std::string head_dim, num_kv_heads;
  } size_keys;
};

/// Whether generation recomputes the whole sequence, instead of decoding with the KV cache, for the token that
/// follows `cached` tokens, as transformers' generate() does for longrope (Phi3ForCausalLM.
/// prepare_inputs_for_generation): when the sequence first grows past original_max_positions, the cache (keys
/// rotated with the short factors) is dropped and the sequence, new token included, run again as one pass (all
/// of it with the long factors: RopeScaling::Type::LongRope). True for a LongRope config and cached ==
/// original_max_positions only (a prompt longer than that was one pass with the long factors already).
bool longrope_recomputes_cache(const ModelConfig& c, int64_t cached);

/// The attention window of layer `layer` (in [0, num_layers)): c.sliding_window when that layer has it
/// (sliding_layers empty, or true at `layer`), else 0 (full causal attention).
inline int64_t layer_window(const ModelConfig& c, int64_t layer) {
  const bool windowed = c.sliding_layers.empty() || c.sliding_layers[size_t(layer)];
  return windowed ? c.sliding_window : 0;
}

/// The dimensions of each head RoPE rotates: c.rotary_dim, or head_dim when it is 0.
inline int64_t rotary_dim_of(const ModelConfig& c) { return c.rotary_dim > 0 ? c.rotary_dim : c.head_dim; }

/// Whether layer `layer` of a Gemma3 config uses the local RoPE table (θ = rope_local_theta, default
/// frequencies): rope_local_theta is set and the layer is a sliding one (sliding_layers empty, or true at
/// `layer`).
inline bool layer_rope_local(const ModelConfig& c, int64_t layer) {
  return c.rope_local_theta > 0 && (c.sliding_layers.empty() || c.sliding_layers[size_t(layer)]);
}

/// Parses a config.json object ("gpt2", "llama", "mistral", "qwen2", "qwen3", "phi3", "gemma", "gemma2" or
/// "gemma3_text"; a soft-capping key that is not null and not a positive number within float32's range is refused
/// naming it).
/// `source` names the file in error messages. Throws FormatError for unknown model_type (listing the
/// supported ones), missing/invalid keys, a GPT-2 key and its alias with different values (naming both keys
/// and values), inconsistent head counts (named by the keys the file uses: ModelConfig::size_keys), or an
/// unsupported rope_scaling / rope_parameters rope_type (or transformers 4's "type"; the message lists the
/// supported ones). Accepted, for the RoPE model types (not gpt2): "default" or absent, "linear", "llama3" and
/// "dynamic" for all of them; "yarn" (YaRN) for llama, mistral, qwen2, qwen3, gemma, gemma2 and gemma3_text;
/// for phi3 "longrope" and its old names "su" and "yarn" (read as longrope, as Phi3Config does, not as YaRN).
/// Refused: "longrope" / "su" outside phi3, any other type, and for gemma3_text a sliding_attention entry of
/// rope_parameters other than "default". Further: a longrope short_factor / long_factor
/// that is not rotary_dim/2 finite positive numbers (naming the key and, for a bad value, its index), a
/// partial_rotary_factor other than 1 outside phi3 (for phi3: not in (0, 1], or
/// giving an odd or zero rotary_dim), a
/// scaling key that is missing, not a number (original_max_position_embeddings:
/// not a positive integer), not finite or not positive (each error names the
/// key: "rope_scaling.factor"), a llama3 high_freq_factor equal to its
/// low_freq_factor (one below it is run, with a warning naming both keys:
/// kq::warn), a Qwen2 or Qwen3 use_sliding_window that is not a boolean and, when
/// it is true, a sliding_window that is not a positive integer, a
/// max_window_layers that is not an integer >= 0, a layer_types that is not
/// one "full_attention" or "sliding_attention" per layer.
ModelConfig parse_model_config(const nlohmann::json& j, const std::string& source);

/// Reads and parses DIR/config.json (strict JSON: duplicate keys rejected; a
/// UTF-8 byte-order mark before it refused, as transformers' json.load does). Throws FormatError naming the file,
/// or the folder when it holds kq quantize's staging marker .kq-staging (an unfinished output, OUT.tmp-XXXXXX).
ModelConfig load_model_config(const std::filesystem::path& model_dir);

}  // namespace kq
