#pragma once
// Causal transformer language models (GPT-2, Llama) for inference: load a
// Hugging Face folder (or build random weights), run prefill/decode with a KV
// cache, and expose every linear projection so a quantizer can swap it.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/tensor.hpp"

namespace kq {

class Linear;  // src/kernels/linear.hpp: the op interface of every weight format

/// Keys and values of the tokens a model has seen in one sequence, so each new
/// token (decode) attends to the past without recomputing it. Layout per layer:
/// keys and values each F32 [num_kv_heads, capacity, head_dim] (after RoPE for
/// Llama). Create one with Model::make_cache(); one cache per sequence. Movable.
class KVCache {
 public:
  KVCache() = default;
  /// A cache for up to `capacity` tokens, holding none. Throws InvalidArgument
  /// for non-positive sizes.
  KVCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity);

  /// Tokens held (= the position of the next token).
  int64_t size() const { return size_; }
  /// Tokens it can hold.
  int64_t capacity() const { return capacity_; }
  /// Forgets all tokens (keeps the memory): the next forward starts at position 0.
  void reset() { size_ = 0; }
  /// Bytes of cache memory.
  size_t bytes() const { return data_.size() * sizeof(float); }

  int64_t num_layers() const { return num_layers_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }

  /// For model implementations: layer `layer`'s keys / values, F32
  /// [num_kv_heads, capacity, head_dim]. No bounds check on `layer`.
  float* keys(int64_t layer) { return data_.data() + (2 * layer) * layer_stride(); }
  float* values(int64_t layer) { return data_.data() + (2 * layer + 1) * layer_stride(); }
  /// For model implementations: marks n more positions as filled. Throws
  /// InvalidArgument if that exceeds the capacity.
  void advance(int64_t n);

 private:
  int64_t layer_stride() const { return num_kv_heads_ * capacity_ * head_dim_; }
  int64_t num_layers_ = 0, num_kv_heads_ = 0, head_dim_ = 0, capacity_ = 0, size_ = 0;
  std::vector<float> data_;
};

/// One linear projection of a model, for quantizers: `*op` may be replaced by
/// any Linear with the same in/out features.
struct LinearSlot {
  /// Hugging Face module name, e.g. "model.layers.0.self_attn.q_proj",
  /// "transformer.h.0.attn.c_attn" (GPT-2 names always use the "transformer."
  /// prefix, whichever style the file had), "lm_head".
  std::string name;
  std::unique_ptr<Linear>* op = nullptr;
  /// The output projection to the vocabulary (tied to the token embedding when
  /// config().tie_word_embeddings).
  bool is_lm_head = false;
};

/// Bytes of a model's weights in memory.
struct WeightBytes {
  size_t linear = 0;  ///< all Linear ops, as each reports (Linear::weight_bytes)
  size_t other = 0;   ///< embeddings, position embeddings, norm parameters
  size_t total() const { return linear + other; }
};

/// A causal language model running on the CPU in FP32 (Linear ops may be
/// swapped for quantized ones). Not copyable; forward() uses internal scratch
/// buffers, so one Model must not run forward() from two threads at once.
class Model {
 public:
  virtual ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  /// Loads a Hugging Face model folder: DIR/config.json (GPT2LMHeadModel or
  /// LlamaForCausalLM) and DIR/model.safetensors or a sharded index. Weights
  /// are converted to F32 (BF16/F16 on disk), GPT-2 Conv1D weights [in, out]
  /// are transposed to [out, in]; F32 tensors that need no change stay
  /// memory-mapped (zero copy). GPT-2 accepts "transformer."-prefixed and bare
  /// hub-style names (h.0.attn.c_attn.weight, wte.weight) and ignores the
  /// h.N.attn.bias / h.N.attn.masked_bias buffers.
  /// Throws FormatError naming the folder (and tensor) for a missing folder,
  /// config or tensor, a wrong shape or a non-float dtype; Unsupported for an
  /// activation other than gelu_new (GPT-2) / silu (Llama).
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ExecContext& ctx = {});

  /// A model with random weights generated in-process (uniform with standard
  /// deviation 0.02, norm gains 1, biases 0; deterministic for a seed), for
  /// speed and memory benchmarks of large shapes (GPT-2 124M, Llama 1B) —
  /// speed does not depend on weight values. config.torch_dtype ("bfloat16",
  /// "float16", else F32) sets disk_weight_bytes(). Throws InvalidArgument for
  /// an inconsistent config.
  static std::unique_ptr<Model> random(const ModelConfig& config, uint64_t seed, const ExecContext& ctx = {});

  const ModelConfig& config() const { return config_; }
  const ExecContext& context() const { return ctx_; }
  /// Changes the threads used by later forward() calls (device must stay CPU:
  /// throws Unsupported otherwise).
  void set_context(const ExecContext& ctx);
  /// The folder the model was loaded from (empty for random()).
  const std::filesystem::path& source_dir() const { return source_dir_; }

  /// A KV cache for up to `max_tokens` tokens (0 = config().max_positions).
  /// Throws InvalidArgument if max_tokens < 0 or > config().max_positions.
  KVCache make_cache(int64_t max_tokens = 0) const;

  /// Runs the model on `tokens`, appended at the cache's current position
  /// (prefill when many, decode when one), and advances the cache. Tokens are
  /// processed in chunks of at most prefill_chunk() rows (exactly equivalent
  /// to one pass: attention is causal).
  /// logits: F32 row-major [tokens.size(), vocab] when all_logits, else only
  /// the last token's [vocab]; may be nullptr to skip the lm_head.
  /// Throws InvalidArgument for an empty `tokens`, a token id outside
  /// [0, vocab), a cache of another model's shape, or a cache without room
  /// for the tokens (nothing is computed then).
  void forward(std::span<const int32_t> tokens, KVCache& cache, float* logits, bool all_logits = true);

  /// Every linear projection, in execution order, lm_head last.
  std::vector<LinearSlot> linear_layers();

  /// Bytes of all weights in memory (linear + other). A tied lm_head that still
  /// shares the embedding matrix is counted once.
  size_t weight_bytes() const { return weight_breakdown().total(); }
  WeightBytes weight_breakdown() const;
  /// Bytes of the weights in their on-disk dtype (as loaded; for random(),
  /// per config.torch_dtype), each tensor once.
  size_t disk_weight_bytes() const { return disk_bytes_; }

  /// Maximum rows per internal forward chunk.
  static constexpr int64_t prefill_chunk() { return 256; }

 protected:
  Model(ModelConfig config, ExecContext ctx, std::filesystem::path source_dir);

  /// Runs tokens at positions cache.size() .. cache.size()+n−1 (n <= prefill_chunk(),
  /// already validated); writes K/V into the cache but does not advance it.
  /// logits: [n, vocab], or [vocab] for the last token when last_only, or nullptr.
  virtual void forward_chunk(std::span<const int32_t> tokens, KVCache& cache, float* logits,
                             bool last_only) = 0;

  /// Registration by implementations (at construction): a linear slot, and a
  /// non-linear parameter tensor (counted in WeightBytes::other).
  void register_linear(std::string name, std::unique_ptr<Linear>* op, bool is_lm_head = false);
  void register_parameter(const Tensor& t);
  void set_disk_weight_bytes(size_t bytes) { disk_bytes_ = bytes; }

 private:
  ModelConfig config_;
  ExecContext ctx_;
  std::filesystem::path source_dir_;
  std::vector<LinearSlot> linears_;
  std::vector<Tensor> parameters_;
  size_t disk_bytes_ = 0;
};

}  // namespace kq
