#pragma once
// Causal transformer language models (GPT-2, Llama) for inference: load a
// Hugging Face folder (or build random weights), run prefill/decode with a KV
// cache, and expose every linear projection so a quantizer can swap it.
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <new>
#include <span>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/linear.hpp"
#include "kq/tensor.hpp"

namespace kq {

namespace models {
class Backend;  // internal (src/models/backend.hpp of the source repository): the device ops a step runs on
struct Param;
enum class ParamKind;
}  // namespace models

/// Keys and values of the tokens a model has seen in one sequence, so each new
/// token (decode) attends to the past without recomputing it. Layout per layer:
/// keys and values each [num_kv_heads, capacity, head_dim] (after RoPE for
/// Llama): F32 host memory for a model on the CPU, BF16 device memory for a
/// model on CUDA (device() tells). Create one with Model::make_cache(); one
/// cache per sequence. Movable: a moved-from cache is empty (capacity 0; a
/// forward with it throws InvalidArgument). Copyable (a copy of a device cache
/// shares its device memory). Host memory is not initialized when it is
/// allocated (so the resident memory follows the positions filled): the model
/// reads only positions [0, size()).
class KVCache {
 public:
  KVCache() = default;
  /// A host (CPU, F32) cache for up to `capacity` tokens, holding none.
  /// Throws InvalidArgument for non-positive sizes or an element count past
  /// 2^56, std::bad_alloc when the host memory is not there.
  KVCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity);
  /// For model backends: a cache whose BF16 keys/values live in `device_storage`
  /// (at least 2·num_layers·num_kv_heads·capacity·head_dim·2 bytes of device
  /// memory on `device`). Throws InvalidArgument for non-positive sizes, null storage,
  /// or a `device` that is CPU or not a Device value (e.g. Device(7)).
  KVCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity, Device device,
          std::shared_ptr<void> device_storage);
  KVCache(KVCache&& other) noexcept;
  KVCache& operator=(KVCache&& other) noexcept;
  KVCache(const KVCache&) = default;
  KVCache& operator=(const KVCache&) = default;

  /// Tokens held (= the position of the next token).
  int64_t size() const { return size_; }
  /// Tokens it can hold.
  int64_t capacity() const { return capacity_; }
  /// Forgets all tokens (keeps the memory): the next forward starts at position 0.
  void reset() { size_ = 0; }
  /// Bytes of cache memory (host or device).
  size_t bytes() const {
    return device_ == Device::CPU ? data_.size() * sizeof(float)
                                  : size_t(2 * num_layers_ * layer_stride()) * sizeof(uint16_t);
  }
  /// Where the cache lives: CPU (F32 host memory) or CUDA (BF16 device memory).
  Device device() const { return device_; }

  int64_t num_layers() const { return num_layers_; }
  int64_t num_kv_heads() const { return num_kv_heads_; }
  int64_t head_dim() const { return head_dim_; }

  /// For model implementations, host caches only: layer `layer`'s keys /
  /// values, F32 [num_kv_heads, capacity, head_dim]. No bounds check on `layer`.
  float* keys(int64_t layer) { return data_.data() + (2 * layer) * layer_stride(); }
  float* values(int64_t layer) { return data_.data() + (2 * layer + 1) * layer_stride(); }
  /// For model backends, device caches only: layer `layer`'s keys / values,
  /// BF16 bits in device memory [num_kv_heads, capacity, head_dim].
  uint16_t* device_keys(int64_t layer) const { return device_base() + (2 * layer) * layer_stride(); }
  uint16_t* device_values(int64_t layer) const { return device_base() + (2 * layer + 1) * layer_stride(); }
  /// For model implementations: marks n more positions as filled. Throws
  /// InvalidArgument if that exceeds the capacity.
  void advance(int64_t n);
  /// Host caches only: grows the capacity to `capacity` tokens (nothing when it
  /// is not larger), keeping the tokens held (positions [0, size()) of every
  /// layer's keys and values, copied into the larger layout), so a forward
  /// after it computes exactly what it would have with a cache of that
  /// capacity from the start. The capacity must stay within the model's
  /// max_positions for a forward to accept the cache. Throws Unsupported for
  /// a device cache (grow it with Model::reserve_cache),
  /// InvalidArgument for a moved-from cache or an element count past 2^56, and
  /// std::bad_alloc when the memory is not there (the cache unchanged then).
  void reserve(int64_t capacity);

 private:
  /// std::allocator whose vector::resize leaves the floats uninitialized: a
  /// large cache's pages are not touched until a token is stored there.
  template <class T>
  struct UninitAllocator : std::allocator<T> {
    template <class U>
    struct rebind {
      using other = UninitAllocator<U>;
    };
    UninitAllocator() = default;
    template <class U>
    UninitAllocator(const UninitAllocator<U>&) noexcept {}
    template <class U>
    void construct(U* p) noexcept {
      ::new (static_cast<void*>(p)) U;
    }
    template <class U, class... Args>
    void construct(U* p, Args&&... args) {
      ::new (static_cast<void*>(p)) U(std::forward<Args>(args)...);
    }
  };
  using HostStorage = std::vector<float, UninitAllocator<float>>;

  int64_t layer_stride() const { return num_kv_heads_ * capacity_ * head_dim_; }
  uint16_t* device_base() const { return static_cast<uint16_t*>(device_data_.get()); }
  int64_t num_layers_ = 0, num_kv_heads_ = 0, head_dim_ = 0, capacity_ = 0, size_ = 0;
  Device device_ = Device::CPU;
  HostStorage data_;
  std::shared_ptr<void> device_data_;
};

/// One linear projection of a model, for quantizers: `*op` may be replaced by
/// any Linear with the same in/out features (forward() and decode_batch()
/// refuse an op of another shape, or none, naming the layer).
struct LinearSlot {
  /// Hugging Face module name, e.g. "model.layers.0.self_attn.q_proj",
  /// "transformer.h.0.attn.c_attn" (GPT-2 names always use the "transformer."
  /// prefix, whichever style the file had), "lm_head".
  std::string name;
  std::unique_ptr<Linear>* op = nullptr;
  /// The output projection to the vocabulary (tied to the token embedding when
  /// config().tie_word_embeddings).
  bool is_lm_head = false;
  /// The dtype the layer's weight matrix was stored in on disk (F32, BF16 or
  /// F16; a tied lm_head: the token embedding's), recorded as the model was
  /// built, before any LinearTransform, and kept whatever op is put into the
  /// slot later: what the FP32 op kq built for the layer is held in when it
  /// stays unquantized (hold_unquantized_in_disk_dtype), and what adaptive
  /// precision counts the layer's bytes before quantization in. F32 for
  /// random weights and for a layer read quantized from a kq-quantized folder.
  DType disk_dtype = DType::F32;
};

/// Bytes of a model's weights in memory.
struct WeightBytes {
  size_t linear = 0;  ///< all Linear ops, as each reports (Linear::weight_bytes)
  size_t other = 0;   ///< embeddings, position embeddings, norm parameters
  size_t total() const { return linear + other; }
};

/// Replaces a linear layer as a model is built (e.g. quantizes it), given its
/// slot name (LinearSlot::name) and the FP32 (or loaded quantized) op; returns
/// the op to keep (Linear: kq/linear.hpp), with the same in/out features as
/// the op it was given (returning nullptr or an op of another shape throws
/// InvalidArgument naming the layer). Used so a large model never holds all its FP32 weights.
using LinearTransform = std::function<std::unique_ptr<Linear>(const std::string& name, std::unique_ptr<Linear> op)>;

/// A causal language model on the CPU (FP32, Linear ops may be swapped for
/// quantized ones) or on a CUDA GPU (BF16 activations, F32 residual stream,
/// BF16 KV cache, every Linear converted by gpu::to_cuda). The architecture
/// code is the same for both; only the ops differ (models::Backend, internal).
/// Not copyable. Not thread-safe: forward() and decode_batch() use internal
/// scratch buffers, so one Model must not run them from two threads at once
/// (evaluate_perplexity, compare_models and kq/bench.hpp run forward()), nor
/// change the model while one of them runs. Each of these calls takes the
/// model's InUse mark first: forward(), decode_batch(), and every call that
/// changes the model (set_context, to_device, set_cuda_graphs,
/// hold_unquantized_in_disk_dtype, and kq/optimizer.hpp's quantize_model /
/// kq/adaptive.hpp's quantize_model_adaptive on it). Such a call, made while
/// one of them from another thread on the same Model runs, throws
/// InvalidArgument ("Model::forward called while another call on the same
/// Model runs (a Model is not thread-safe; use one Model per thread)", with
/// the call's own name) before it reads or changes anything, instead of
/// corrupting both; the call already running is not disturbed. Calls made of
/// many forward() calls hold the mark from their start to their end, so no
/// other thread can change the model between two of them: evaluate_perplexity,
/// compare_models (kq/eval.hpp), measure_latency (kq/bench.hpp); a caller's
/// own loop of forward() calls (generation) may do the same with an InUse
/// object, the forward() calls inside it on the same thread passing. An atomic
/// flag, not a lock: nothing waits. Calls that only read the model (weight_bytes,
/// linear_layers, plan_adaptive_precision, save_quantized_model, ...) take no
/// mark: they may run beside a forward(), not beside a call that changes the
/// model. Use one Model per thread.
class Model {
 public:
  virtual ~Model();
  Model(const Model&) = delete;
  Model& operator=(const Model&) = delete;

  /// Loads a Hugging Face model folder: DIR/config.json (GPT2LMHeadModel or
  /// LlamaForCausalLM) and DIR/model.safetensors or a sharded index. Weights
  /// are converted to F32 (BF16/F16 on disk), except in a quantized folder (kq,
  /// AutoAWQ / AutoGPTQ, bitsandbytes), whose unquantized embeddings and linears
  /// (an unquantized lm_head, layers kept by keep patterns) stay BF16/F16: on the
  /// CPU they are read in that dtype from the start, never as an FP32 copy (the
  /// model hold_unquantized_in_disk_dtype makes of the FP32 one, byte for byte;
  /// on CUDA they are converted to it after the read). An unquantized folder's
  /// model holds every FP32 weight
  /// (a 7B BF16 checkpoint: about 28 GB); to quantize a folder, load_quantized
  /// (kq/optimizer.hpp) quantizes each layer as it is read instead, through
  /// load(dir, ctx, transform, tables_in_disk_dtype). GPT-2 Conv1D weights [in, out]
  /// are transposed to [out, in]; F32 tensors that need no change stay
  /// memory-mapped (zero copy). GPT-2 accepts "transformer."-prefixed and bare
  /// hub-style names (h.0.attn.c_attn.weight, wte.weight) and ignores the
  /// h.N.attn.bias / h.N.attn.masked_bias buffers. Tensors of the file that
  /// the architecture does not use (e.g. layers beyond num_hidden_layers) are
  /// reported once through kq::warn (kq/warning.hpp) with their count and first
  /// names; RoPE inv_freq buffers are not reported. A kq quantized folder with
  /// checksums (save_quantized_model, kq/optimizer.hpp) has each tensor verified
  /// the first time it is read (one XXH3-64 pass over its mapped bytes): a
  /// FormatError naming the folder, file and tensor ("checksum mismatch: the
  /// file was changed after kq wrote it"), or naming the key of a malformed
  /// record; a folder without them (an older kq's) loads unchecked.
  /// ctx.device == CUDA: each linear layer is converted to the GPU as it is
  /// read (the host never holds all F32 weights), embeddings become BF16 on
  /// the device, norms F32. The load's CPU work (converting weights, a
  /// LinearTransform's quantization) runs on ctx.threads (resolve_threads), as
  /// does that of random() and random_quantized().
  /// Throws FormatError naming the folder (and tensor) for a missing folder,
  /// config or tensor, a wrong shape or a non-float dtype, and naming
  /// config.json and the key, before anything is allocated per layer, for a
  /// layer count above the layers the safetensors files hold or an embedding
  /// (or Llama layer-0 attention) shape that contradicts the config's sizes, and naming config.json
  /// for a config kq does not run (a model_type other than gpt2 / llama / mistral / qwen2 / qwen3 / phi3 /
  /// gemma / gemma2 / gemma3_text, a RoPE type other than default / llama3 / linear / yarn / dynamic /
  /// longrope (phi3), an activation other than gelu_new, gelu_pytorch_tanh or gelu (GPT-2, the Gemmas) / silu (Llama); see
  /// parse_model_config); Unsupported for CUDA in a CPU-only build or without a usable device, or for a format,
  /// activation or RoPE the GPU path lacks (exact-erf GELU; a rotary_dim below head_dim, Phi-3's
  /// partial_rotary_factor, refused naming config.json and the key before any weight is read). Throws
  /// InvalidArgument for an
  /// empty `dir` path, for a ctx.device that is not a Device value (e.g. Device(7)) and for ctx.threads outside
  /// [0, kMaxThreads]. A weight whose F32 copy cannot be allocated is an OutOfMemory (kq/out_of_memory.hpp, a
  /// std::bad_alloc) naming the folder, the tensor, its shape, dtype and file, and the bytes asked.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ExecContext& ctx = {});
  /// As load(dir, ctx), passing every linear layer through `transform` as it
  /// is read (in linear_layers() order, lm_head last; a tied lm_head arrives
  /// as an FP32 op over the embedding table), then, on CUDA, converting it to
  /// the GPU. A layer's weights are read just before its call, so a transform
  /// that quantizes leaves one layer's FP32 weights alive at a time, never all
  /// of them (load_quantized builds on this). The layers of a kq-quantized
  /// folder arrive quantized, its unquantized ones (and the lm_head) as FP32
  /// ops, held in their 16-bit disk dtype after the build (a transform
  /// makes the load read them as FP32 first, as load(dir, ctx) no longer
  /// does on the CPU). `transform` is not kept past the call. Same
  /// errors as load(dir, ctx), and whatever `transform` throws (returning
  /// nullptr or an op whose in/out features differ from the layer's:
  /// InvalidArgument naming the layer).
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ExecContext& ctx,
                                     const LinearTransform& transform);
  /// As load(dir, ctx, transform); with `tables_in_disk_dtype` (and ctx.device
  /// == CPU; on another device it is ignored) the embedding tables (Llama's
  /// embed_tokens, GPT-2's wte and wpe) and an unquantized lm_head that were
  /// BF16 or F16 on disk are read in that dtype, never converted to F32: a
  /// tied lm_head arrives at `transform` as a 16-bit op (format() "bf16" /
  /// "f16") over the 16-bit table, an untied one as a 16-bit op over its own
  /// weight (a transform that quantizes it reads it with dequantized_weight()).
  /// The host then never holds an FP32 copy of them, which is how load_quantized
  /// (kq/optimizer.hpp) keeps the peak memory of a BF16 checkpoint down. When
  /// no linear layer ends up quantized or held in 16 bits by `transform`
  /// (every op FP32, but for an lm_head returned as the 16-bit op it came as),
  /// the tables and the lm_head read so are converted to F32 at the end
  /// (hold_unquantized_in_f32), so the model is then the one load(dir, ctx,
  /// transform) returns; otherwise it is as that model after
  /// hold_unquantized_in_disk_dtype() for these parts (load_to_quantize,
  /// kq/optimizer.hpp, holds every layer in 16 bits so).
  /// Same errors as load(dir, ctx, transform); a 16-bit copy that cannot be
  /// allocated is an OutOfMemory naming the folder, the tensor, its shape,
  /// dtype and file, and the bytes asked.
  static std::unique_ptr<Model> load(const std::filesystem::path& dir, const ExecContext& ctx,
                                     const LinearTransform& transform, bool tables_in_disk_dtype);

  /// A model with random weights generated in-process (uniform with standard
  /// deviation 0.02, norm gains 1, biases 0; deterministic for a seed), for
  /// speed and memory benchmarks of large shapes (GPT-2 124M, Llama 1B) —
  /// speed does not depend on weight values. config.torch_dtype ("bfloat16",
  /// "float16", else F32) sets disk_weight_bytes(). Throws InvalidArgument for
  /// an inconsistent config (a size outside [1, 2^31], head counts that do not
  /// divide, an arch that is not an Arch value such as Arch(9), a negative or
  /// non-finite soft-capping, ...).
  static std::unique_ptr<Model> random(const ModelConfig& config, uint64_t seed, const ExecContext& ctx = {});
  /// As random(config, seed, ctx), passing every linear layer through
  /// `transform` as it is built (then, on CUDA, converting it to the GPU), one
  /// layer at a time: e.g. quantize a Llama-7B shape on the host and run it on
  /// the GPU without ever holding its 27 GB of FP32 weights. `transform` is
  /// not kept past the call. Same errors as random(config, seed, ctx), and
  /// those of `transform` as for load(dir, ctx, transform).
  static std::unique_ptr<Model> random(const ModelConfig& config, uint64_t seed, const ExecContext& ctx,
                                       const LinearTransform& transform);
  /// A random model for speed and memory benchmarks whose linear layers are
  /// random ops of `mode` ("bf16"/"f32" = unquantized, or a quant mode name
  /// such as "int8", "fp8", "nf4", "int4-g128"); the lm_head too when
  /// `quantize_lm_head`, else unquantized. On CUDA the weights are drawn on
  /// the device in their final layout (gpu::random_cuda_linear: milliseconds
  /// per matrix, no host copy; values differ from the CPU's); on the CPU each
  /// FP32 random layer is quantized as it is built. Embeddings and norms as
  /// random(). "fp32" is another name of "f32"; AWQ modes run on CUDA only (on
  /// the CPU a quantized AWQ layer needs calibration data: quantize_model).
  /// Throws as random(), and InvalidArgument for an unknown mode (the empty
  /// one included; the message lists the valid modes) or an AWQ mode on the CPU.
  static std::unique_ptr<Model> random_quantized(const ModelConfig& config, uint64_t seed, const ExecContext& ctx,
                                                 const std::string& mode, bool quantize_lm_head = false);

  /// Marks the Model as in use by the calling thread for the object's
  /// lifetime (see the class comment): what forward(), decode_batch() and
  /// every call that changes the model take first. A caller that changes the
  /// model itself (e.g. replaces ops through linear_layers()) may take it too.
  /// A thread that holds the mark already passes (quantize_model's AWQ
  /// calibration runs forward() inside it). `what` names the call in the
  /// message. Throws InvalidArgument "<what> called while another call on the
  /// same Model runs (a Model is not thread-safe; use one Model per thread)"
  /// when another thread holds the mark; nothing waits.
  class InUse {
   public:
    InUse(Model& model, const char* what);
    ~InUse();
    InUse(const InUse&) = delete;
    InUse& operator=(const InUse&) = delete;

   private:
    std::atomic<std::thread::id>& owner_;
    bool held_ = false;
  };

  const ModelConfig& config() const { return config_; }
  /// The device, and the CPU threads (ExecContext::threads) of forward(),
  /// decode_batch() and of the CPU work on the model's weights:
  /// quantize_model (AWQ's calibration and search included),
  /// plan_adaptive_precision, quantize_model_adaptive.
  const ExecContext& context() const { return ctx_; }
  /// Changes the CPU threads used by later calls (context()). The device must
  /// stay the same (throws Unsupported otherwise; see to_device()). Throws
  /// InvalidArgument for a bad thread count, and while another thread's call on
  /// this Model runs (class comment); nothing changes then.
  void set_context(const ExecContext& ctx);
  /// Moves a CPU model (FP32 or quantized) to ctx.device: converts every
  /// linear layer with gpu::to_cuda (quantized formats keep their codes) and
  /// uploads embeddings (BF16) and norm parameters (F32). KV caches made
  /// before must be made again (make_cache()). Same device: converts only
  /// layers swapped in since (e.g. by a quantizer) and sets the threads.
  /// Nothing changes when it throws: Unsupported for CUDA → CPU, a CPU-only
  /// build, no usable device, a layer format without a GPU path (naming
  /// the layer), a config rotating part of each head (ModelConfig::rotary_dim);
  /// InvalidArgument for a bad thread count, a LinearSlot
  /// holding a null op or an op of another shape (check_linear_layers), or
  /// while another thread's call on this Model runs (class comment). The
  /// conversion's CPU work runs on ctx.threads.
  void to_device(const ExecContext& ctx);
  /// Enables (default) or disables CUDA graphs for decode steps on CUDA: each
  /// decode step shape (batch size, cache capacity) is captured once after a
  /// warm-up step, then replayed. Also off when the environment variable
  /// KQ_CUDA_GRAPHS=0. No effect on the CPU. Throws InvalidArgument while
  /// another thread's call on this Model runs (class comment).
  void set_cuda_graphs(bool enabled);
  /// Diagnostics: decode steps served so far by replaying a captured CUDA
  /// graph (0 on the CPU or with graphs off).
  int64_t cuda_graph_replays() const;
  /// Diagnostics: GPU time (ms) of those replays, from CUDA events recorded
  /// around each replay when the environment variable KQ_CUDA_STEP_TIMING=1
  /// was set at the first step (0 otherwise, and on the CPU). A step's wall
  /// time minus this is the host's share (metadata upload, launch, logits copy).
  double cuda_graph_gpu_ms() const;
  /// The folder the model was loaded from, absolute (the path given to load(),
  /// made absolute and weakly canonical then: a later change of the working
  /// directory does not change the folder it names); empty for random().
  const std::filesystem::path& source_dir() const { return source_dir_; }
  /// Names (sorted) of the tensors in source_dir()'s weights that the model
  /// does not use (e.g. layers beyond num_hidden_layers), as load() reported
  /// them through kq::warn: save_quantized_model does not copy them into the
  /// quantized folder. Empty for random() and when every tensor is used.
  const std::vector<std::string>& unused_source_tensors() const { return unused_source_tensors_; }

  /// A KV cache for up to `max_tokens` tokens (0 = config().max_positions), on
  /// the model's device (CUDA: BF16 device memory).
  /// Throws InvalidArgument if max_tokens < 0 or > config().max_positions.
  KVCache make_cache(int64_t max_tokens = 0) const;

  /// Grows `cache` (made by this model's make_cache, on its device) to hold `capacity` tokens, keeping the
  /// tokens it holds, so later forwards compute exactly what they would have with a cache of that capacity from
  /// the start; nothing when `capacity` is not larger. Host caches: KVCache::reserve. Device caches: new device
  /// memory of the larger capacity, the positions held copied into it (the old memory is released once no copy
  /// of the cache holds it); a decode CUDA graph is captured per capacity, so grow by large steps (doubling).
  /// Throws InvalidArgument when `cache` was not made for this model or `capacity` > config().max_positions,
  /// std::bad_alloc (host) or kq::Error (device: out of memory) when the memory is not there, `cache` unchanged.
  void reserve_cache(KVCache& cache, int64_t capacity) const;

  /// Runs the model on `tokens`, appended at the cache's current position
  /// (prefill when many, decode when one), and advances the cache. Tokens are
  /// processed in chunks of at most prefill_chunk() rows (exactly equivalent
  /// to one pass: attention is causal).
  /// logits: F32 row-major [tokens.size(), vocab] when all_logits, else only
  /// the last token's [vocab]; may be nullptr to skip the lm_head. With
  /// ModelConfig::final_logit_softcapping c > 0 (Gemma 2) each logit z is
  /// returned as c · tanh(z / c).
  /// The call is one forward pass of transformers over these tokens with the
  /// cache as past_key_values, unless `pass_end` (> 0) says it is part of a
  /// longer one: a pass ending at sequence length pass_end (>= cache.size() +
  /// tokens.size()) fed in several calls (e.g. an evaluation window in
  /// chunks). It matters only where the RoPE depends on the pass's length:
  /// Phi-3's longrope (RopeScaling::Type::LongRope) rotates every position of
  /// a pass ending past original_max_positions with the long factors, the
  /// keys already in the cache keeping the rotation they were stored with.
  /// Generating token by token as transformers' generate() does (the library
  /// has no generate(); `kq generate` is this loop, with a Sampler of
  /// kq/eval.hpp picking each token from the last row's logits): forward the
  /// prompt, then for each new token call longrope_recomputes_cache(config(),
  /// cache.size()) (kq/config.hpp) first; when it is true, cache.reset() and
  /// forward the whole sequence (prompt, the tokens generated so far and the
  /// new one) as one pass, else forward the new token alone. Without that
  /// step a longrope model (Phi-3) decoding past original_max_positions keeps
  /// the short-factor keys and its tokens differ from transformers' (the
  /// check is false for every other config, so the loop fits all models).
  /// Throws InvalidArgument for an empty `tokens`, a token id outside
  /// [0, vocab), a cache of another model's shape or device, a cache
  /// without room for the tokens, a pass_end below cache.size() +
  /// tokens.size() (but 0) or past config().max_positions, or a linear layer whose op, put into its
  /// LinearSlot after the load, has other in/out features than the layer's
  /// (or is null), naming the layer and both shapes (nothing is computed then),
  /// and when another thread's call on this Model runs (forward(),
  /// decode_batch() or a call that changes the model: see the class comment).
  void forward(std::span<const int32_t> tokens, KVCache& cache, float* logits, bool all_logits = true,
               int64_t pass_end = 0);

  /// Batched decode: one new token per sequence, tokens[i] appended to
  /// *caches[i] at its own position, all sequences in one step (each weight
  /// read once for the batch); advances every cache by one.
  /// logits: F32 row-major [tokens.size(), vocab] (row i for sequence i), or
  /// nullptr; soft-capped as forward()'s. Equivalent to forward(tokens[i], *caches[i]) for each i (longrope:
  /// each sequence's own length picks its factors, where transformers' one pass over a batch takes the
  /// longest sequence's for all).
  /// Throws InvalidArgument for sizes that differ or are 0, a null or
  /// repeated cache, a token outside the vocabulary, a cache of another
  /// model's shape or device or without room, or a linear layer of another
  /// shape as for forward() (nothing is computed then), and when another
  /// thread's call on this Model runs (as forward(); class comment).
  void decode_batch(std::span<const int32_t> tokens, std::span<KVCache* const> caches, float* logits);

  /// Every linear projection, in execution order, lm_head last.
  std::vector<LinearSlot> linear_layers();

  /// What every function that reads the linear layers checks first (forward,
  /// decode_batch, weight_breakdown, to_device, hold_unquantized_in_disk_dtype,
  /// quantize_model, plan_adaptive_precision, save_quantized_model): integer
  /// compares over the slots, nothing else.
  /// Throws InvalidArgument, prefixed by `where` and naming the layer, for a
  /// slot holding a null op ("holds no op") or an op, put into its LinearSlot
  /// after the load, whose in/out features differ from the layer's (both
  /// shapes named).
  void check_linear_layers(const char* where) const;

  /// The groups of linear layers that read the same input, by module name
  /// (LinearSlot::name), as the architecture registered them (Llama: q/k/v
  /// and gate/up of every layer; GPT-2 none, its c_attn is one matrix): what a
  /// backend may fuse, and what AWQ gives one set of input scales.
  std::vector<std::vector<std::string>> fusion_groups() const;

  /// Holds every weight that is not quantized and was BF16 or F16 on disk in
  /// that 16-bit dtype instead of F32: the embedding tables and the FP32 linear
  /// layers (the lm_head, tied or not; layers kept by keep patterns), which
  /// become 16-bit Linear ops (format() "bf16" / "f16"); a tied lm_head that
  /// shares the token embedding goes on sharing it (one 16-bit copy). Exact:
  /// the F32 values came from that dtype, and compute stays F32 (only the
  /// summation order of those layers changes). quantize_model calls it once a
  /// layer is quantized, load() for a kq-quantized folder; an unquantized
  /// model stays F32. Norm parameters, quantized layers, weights that were F32
  /// on disk, random weights, and layers already converted to a device are
  /// left as they are (on CUDA only the host tables change: the device holds
  /// BF16 copies). Calling it again changes nothing. Throws std::bad_alloc, and
  /// InvalidArgument, before anything changes, for a LinearSlot holding a null
  /// op or an op of another shape (check_linear_layers), and while another
  /// thread's call on this Model runs (class comment).
  void hold_unquantized_in_disk_dtype();

  /// The reverse of hold_unquantized_in_disk_dtype, for a model none of whose
  /// layers ended up quantized: each 16-bit embedding table becomes F32 again,
  /// a 16-bit Linear op over one an FP32 op over its F32 successor (a tied
  /// lm_head goes on sharing the table), and every other 16-bit Linear op
  /// (make_linear_w16) an FP32 op over its weight converted, recording its
  /// dtype as the op's disk dtype: the model Model::load(dir) builds. Exact
  /// (the same values). load(..., tables_in_disk_dtype) calls it when nothing
  /// was quantized or held in 16 bits by its transform; load_quantized
  /// (kq/optimizer.hpp) when it quantized nothing. Norm parameters, quantized
  /// layers, FP32 ones and layers converted to a device are left as they are
  /// (on CUDA only the host tables change). Throws std::bad_alloc, and
  /// InvalidArgument as hold_unquantized_in_disk_dtype (check_linear_layers;
  /// another thread's call on this Model).
  void hold_unquantized_in_f32();

  /// Bytes of all weights in memory (linear + other). A tied lm_head that still
  /// shares the embedding matrix is counted once. Throws InvalidArgument for a
  /// null op or an op of another shape in a LinearSlot (check_linear_layers).
  size_t weight_bytes() const { return weight_breakdown().total(); }
  WeightBytes weight_breakdown() const;
  /// Bytes of the weights in their on-disk dtype (as loaded; for random(),
  /// per config.torch_dtype), each tensor once.
  size_t disk_weight_bytes() const { return disk_bytes_; }

  /// Bytes of the model's constant buffers in host memory (the registered
  /// ones: Llama's RoPE cos/sin tables, F32 [positions, head_dim/2] each, two sets for longrope; not
  /// weights, so not in weight_bytes()). Position tables are sized on demand:
  /// min(256, config().max_positions) positions at first, grown (to at least
  /// the capacity, at least doubling, at most config().max_positions) when
  /// forward() or decode_batch() runs a KV cache of a larger capacity, so a
  /// config's max_position_embeddings alone allocates nothing big.
  size_t buffer_bytes() const;

  /// Maximum rows per internal forward chunk on the CPU (CUDA: 1024).
  static constexpr int64_t prefill_chunk() { return 256; }

 protected:
  /// Creates the backend for ctx.device. `transform` (may be empty) is applied
  /// by make_linear() to every linear layer before the backend converts it.
  Model(ModelConfig config, ExecContext ctx, std::filesystem::path source_dir, LinearTransform transform = {});

  /// The architecture's forward for one step of n rows, written once against
  /// models::Backend (the step's tokens, positions and caches are held by the
  /// backend): embed → blocks → (when `logits`) final norm and lm_head of all
  /// rows, or of the last row only when last_only. Must issue the same op
  /// sequence for the same (n, logits, last_only): the CUDA backend replays it
  /// as a captured graph.
  virtual void forward_step(models::Backend& be, int64_t n, bool logits, bool last_only) = 0;

  /// During forward_step: true when the step belongs to a forward() pass of a longrope config
  /// (RopeScaling::Type::LongRope) that ends past original_max_positions and starts before it, whose every
  /// position transformers rotates with the long factors (forward()'s pass_end); false otherwise, and always in
  /// decode_batch() (one position per sequence: a sequence ending at position p uses the long factors exactly
  /// when p >= original_max_positions). Such steps are never graphable.
  bool long_rope_pass() const { return long_rope_pass_; }

  /// The backend the model runs on (for constructors: WeightSource::generated_linear).
  models::Backend& backend() { return *backend_; }
  /// For constructors: `op` passed through the LinearTransform, then
  /// converted to the model's device. `name` is the slot name; the disk dtype
  /// of `op` as given is recorded for register_linear (LinearSlot::disk_dtype).
  std::unique_ptr<Linear> make_linear(const std::string& name, std::unique_ptr<Linear> op);

  /// Registration by implementations (at construction): a linear slot, a
  /// non-linear parameter (counted in WeightBytes::other, uploaded to the
  /// device) and a constant buffer (uploaded, not counted, e.g. RoPE tables).
  /// Registered objects must stay at their address for the model's lifetime.
  /// A linear slot's op must be there: its in/out features, as built, are
  /// what check_linear_layers() checks a later replacement against;
  /// its LinearSlot::disk_dtype is the one make_linear() recorded for `name`.
  void register_linear(std::string name, std::unique_ptr<Linear>* op, bool is_lm_head = false);
  void register_parameter(models::Param& p, models::ParamKind kind);
  void register_buffer(models::Param& p);
  /// Registers linear slots (already registered) that read the same input and
  /// may be fused by the backend (Backend::fuse: after construction and after
  /// every to_device), e.g. Llama's q/k/v and gate/up.
  void register_fusion(std::vector<std::unique_ptr<Linear>*> slots);
  /// Called by forward() and decode_batch() before a step, outside any CUDA
  /// graph capture, with the largest capacity of the step's KV caches
  /// (<= config().max_positions): position-dependent buffers (Llama's RoPE
  /// tables) must then cover positions [0, capacity), grown on the host and
  /// uploaded again with backend().upload (a registered buffer keeps its
  /// address; only its contents change). Default: nothing.
  virtual void reserve_positions(int64_t capacity) { (void)capacity; }
  void set_disk_weight_bytes(size_t bytes) { disk_bytes_ = bytes; }

 private:
  struct ParamEntry {
    models::Param* param;
    models::ParamKind kind;
    bool counted;
    /// The linear slot make_linear built over this table's host values (a tied lm_head), or empty.
    std::string tied_linear = {};
  };
  void upload_parameters();
  /// Uploads `e` to `be`, or shares a table with `tied` (its tied linear as `be` runs it, or nullptr).
  static void upload_parameter(models::Backend& be, ParamEntry& e, const Linear* tied);
  /// Index in linears_ of the slot named `name`, or -1.
  int64_t linear_index(const std::string& name) const;
  void fuse_linears();
  void run_step(std::span<const int32_t> tokens, std::span<const int32_t> row_seq,
                std::span<const int32_t> row_pos, std::span<KVCache* const> caches, float* logits, bool last_only,
                bool graphable);
  void check_cache(const KVCache& cache, const char* where) const;

  ModelConfig config_;
  ExecContext ctx_;
  std::filesystem::path source_dir_;
  std::vector<std::string> unused_source_tensors_;
  LinearTransform transform_;
  std::unique_ptr<models::Backend> backend_;
  std::vector<LinearSlot> linears_;
  /// linears_[i]'s out / in features as the layer was built: what each forward checks its op against.
  struct LinearShape {
    int64_t out, in;
  };
  std::vector<LinearShape> linear_shapes_;
  /// make_linear's (slot name, LinearSlot::disk_dtype) until register_linear takes it.
  std::vector<std::pair<std::string, DType>> built_disk_dtypes_;
  std::vector<ParamEntry> parameters_;
  std::vector<std::vector<std::unique_ptr<Linear>*>> fusions_;
  std::vector<int32_t> meta_;  // per-step row metadata (host), reused
  bool long_rope_pass_ = false;  // long_rope_pass(): set by forward() for its steps
  /// The thread holding the InUse mark (none: std::thread::id{}); a call from another throws.
  std::atomic<std::thread::id> running_{};
  size_t disk_bytes_ = 0;
};

}  // namespace kq
