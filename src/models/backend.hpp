#pragma once
// The device-ops interface the architectures are written against. Each
// architecture's forward (src/models/llama.cpp, gpt2.cpp) is one sequence of
// Backend calls; the CPU backend (cpu_backend.cpp) runs them with the cpu::
// ops and Linear::forward in F32, the CUDA backend (src/gpu/cuda_backend.cpp)
// with the kernels of src/kernels/cuda/model_ops.hpp and gpu::CudaLinear,
// BF16 activations, an F32 residual stream and BF16 KV caches.
//
// A step runs n rows; row r carries a token, the index of its sequence (KV
// cache) and its position in that sequence. Prefill is one sequence at
// consecutive positions; batched decode is one row per sequence. The
// architecture code never sees positions or caches: the backend holds the
// step's metadata (on the GPU in device memory, so a captured CUDA graph can
// be replayed for the next decode step after uploading new metadata).
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <span>

#include "kernels/cpu/ops_rope.hpp"
#include "kernels/linear.hpp"
#include "kq/context.hpp"
#include "kq/model.hpp"
#include "kq/tensor.hpp"

namespace kq::models {

/// A non-linear model parameter (embedding table, norm gain/bias, RoPE
/// cos/sin table). `host` is on the host: F32, except the embedding tables
/// (ParamKind::Table) of a quantized model, which
/// Model::hold_unquantized_in_disk_dtype turns into their BF16/F16 disk_dtype
/// (load_quantized reads them in it: Model::load's tables_in_disk_dtype).
/// A device backend keeps a copy (Backend::upload) and records where it is.
struct Param {
  Tensor host;                   ///< F32 (Table: F32, BF16 or F16), shape as loaded
  DType disk_dtype = DType::F32; ///< dtype on disk (F32, BF16, F16; random weights: F32)
  const void* device = nullptr;  ///< device copy (Table: BF16, Vector: F32), or nullptr
  size_t device_bytes = 0;       ///< bytes of the device copy
};

/// How a device backend stores a parameter.
enum class ParamKind {
  Table,   ///< embedding tables (token, position): BF16 on the GPU, rows gathered
  Vector,  ///< norm gains/biases and RoPE tables: F32 on the GPU
};

/// RoPE tables for positions [0, table.max_positions): the CPU form
/// (cpu::RopeTable) and the same cos/sin values as Params F32
/// [positions, rotary_dim/2] for device backends (rotary_dim: table.rotary_dim).
/// A model sizes them to the KV
/// caches it runs (Model::reserve_positions), not to config.max_positions.
struct Rope {
  cpu::RopeTable table;
  Param cos, sin;
};
/// Builds both forms for `positions` positions (cpu::make_rope_table with
/// `scaling`, `rotary_dim`, 0: head_dim, and `long_from`, the first position
/// of longrope's long factors; head_dim even, rotary_dim and scaling valid,
/// checked by check_config).
/// Position p's values do not depend on `positions`: a smaller table is a
/// prefix of a larger one, bit for bit.
Rope make_rope(double theta, int64_t head_dim, int64_t positions, const RopeScaling& scaling = {},
               int64_t rotary_dim = 0, int64_t long_from = cpu::kShortFactorsOnly);

/// A matrix of activations in the backend's activation dtype (CPU: F32,
/// CUDA: BF16 device memory): row r starts at p + r·ld elements.
struct Act {
  void* p = nullptr;
  int64_t ld = 0;     ///< row stride in elements
  int64_t esize = 4;  ///< bytes per element
  /// The same rows starting at column c (e.g. K inside a fused QKV output).
  Act col(int64_t c) const { return {static_cast<char*>(p) + c * esize, ld, esize}; }
  /// Rows from r on.
  Act row(int64_t r) const { return {static_cast<char*>(p) + r * ld * esize, ld, esize}; }
  explicit operator bool() const { return p != nullptr; }
};

/// Scratch activation buffers of a step (each [rows, cols], see Backend::act).
enum class Buf : int { H, O, Q, K, V, Att, Gate, Up, Count };

/// The rows of one step and where its results go.
struct StepRows {
  std::span<const int32_t> tokens;   ///< [n] token ids (validated)
  std::span<const int32_t> row_seq;  ///< [n] index into `caches`
  std::span<const int32_t> row_pos;  ///< [n] position of the row in its sequence
  std::span<KVCache* const> caches;  ///< the sequences' caches (the backend's device)
  /// F32 host logits [n, vocab] (or [vocab] for the last row when last_only),
  /// or nullptr when no logits are wanted.
  float* logits = nullptr;
  bool last_only = false;
  /// A decode step the CUDA backend may capture and replay as a CUDA graph.
  bool graphable = false;
};

/// The ops of a step, for the architectures' forward. Not thread-safe.
class Backend {
 public:
  virtual ~Backend() = default;
  virtual Device device() const = 0;
  /// Most rows one step may have.
  virtual int64_t max_rows() const = 0;

  // ---- model setup --------------------------------------------------------
  /// Makes `p` usable by this backend's ops (device copy). CPU: nothing.
  /// A Table's host copy may be F32, BF16 or F16, a Vector's is F32.
  virtual void upload(Param& p, ParamKind kind) = 0;
  /// Instead of upload(p, Table): makes table `p` ([rows, cols], e.g. a tied
  /// token embedding) read its device copy from the weights of `op`, a linear
  /// of this backend built over the same host values (a tied lm_head [vocab,
  /// d]), so the device holds one copy; `op`'s weight storage then lives as
  /// long as this backend. Returns false, with nothing changed, where `op`
  /// holds no such copy (quantized, another layout or shape; CPU: always, the
  /// host tensor is already shared); then upload `p` as usual.
  virtual bool share_table(Param& p, const Linear& op) = 0;
  /// `op` converted to run on this backend (CUDA: gpu::to_cuda), or nullptr
  /// when `op` runs here as it is (always on the CPU). Throws Unsupported for
  /// a format the device cannot run, naming the layer `name`.
  virtual std::unique_ptr<Linear> convert(const std::string& name, const Linear& op) = 0;
  /// A Linear [N, K] with random weights of `mode` ("bf16" or a quant mode
  /// name) generated on the device (CUDA: gpu::random_cuda_linear, rms 0.02),
  /// or nullptr when the backend has no such path (CPU).
  virtual std::unique_ptr<Linear> random_linear(const std::string& mode, int64_t N, int64_t K, uint64_t seed) {
    (void)mode, (void)N, (void)K, (void)seed;
    return nullptr;
  }
  /// Fuses linears that read the same input (Llama's q/k/v, gate/up) where
  /// this backend has a faster path for the group: the CUDA backend
  /// concatenates their weights along N into one device op (one GEMV per step
  /// instead of several) and replaces each slot by a view of its output
  /// columns, still usable alone. Groups it cannot fuse (formats, K or bias
  /// presence differ, an N not a multiple of 16, an op already fused) stay as
  /// they are. CPU: nothing. Throws kq::Error when the device fails.
  virtual void fuse(std::span<std::unique_ptr<Linear>* const> slots) { (void)slots; }
  /// Zero-filled device memory for a KV cache (CPU: nullptr: the cache holds
  /// its own host memory).
  virtual std::shared_ptr<void> alloc_cache(size_t bytes) = 0;
  /// Copies `blocks` blocks of `block_bytes` bytes from device cache memory `src` (one block every `src_pitch`
  /// bytes) to `dst` (one every `dst_pitch` bytes), for Model::reserve_cache: a grown cache's keys and values
  /// of the positions held. Ordered after every step run so far and complete when it returns. CPU: throws
  /// Unsupported (host caches grow by KVCache::reserve). Throws kq::Error when the device fails.
  virtual void copy_cache(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t block_bytes,
                          size_t blocks) = 0;
  /// Replaces the CPU thread count of later steps.
  virtual void set_context(const ExecContext& ctx) = 0;
  /// Enables/disables CUDA graphs for decode steps (CPU: ignored).
  virtual void set_graphs(bool enabled) = 0;
  /// Steps served by replaying a captured CUDA graph so far (CPU: 0).
  virtual int64_t graph_replays() const { return 0; }
  /// GPU ms of those replays when KQ_CUDA_STEP_TIMING=1 (else and CPU: 0).
  virtual double graph_gpu_ms() const { return 0; }

  /// Runs one step: sets up `rows`' metadata, calls body(*this) (the
  /// architecture's forward, which uses only the ops below), and delivers the
  /// logits to rows.logits. The CUDA backend may replay a captured graph of
  /// `body` instead of calling it (rows.graphable), so body must issue the
  /// same op sequence for the same row count and flags.
  virtual void run(const StepRows& rows, const std::function<void(Backend&)>& body) = 0;

  // ---- ops of a step (n = rows of the step) --------------------------------
  /// The residual stream, F32 [n, d] (device memory on the GPU).
  virtual float* residual(int64_t d) = 0;
  /// Scratch activations [n, cols] for `b`; stable within the step.
  virtual Act act(Buf b, int64_t cols) = 0;
  /// x[r] = table[token r] (+ pos_table[position r] when pos_table), in F32;
  /// the tables' host copies may be F32, BF16 or F16 (converted exactly).
  virtual void embed(const Param& table, const Param* pos_table, float* x, int64_t d) = 0;
  /// When add: x += add (residual connection, rows [0, rows)); then out =
  /// RMSNorm(x)·w for `rows` rows of width d.
  virtual void rms_norm(float* x, Act add, const Param& w, float eps, Act out, int64_t rows, int64_t d) = 0;
  /// As rms_norm with LayerNorm(x)·gamma + beta.
  virtual void layer_norm(float* x, Act add, const Param& gamma, const Param& beta, float eps, Act out,
                          int64_t rows, int64_t d) = 0;
  /// y[rows, N] = x[rows, K]·Wᵀ + b with `op` (converted by convert()).
  virtual void linear(const Linear& op, Act x, int64_t rows, Act y) = 0;
  /// ys[i] = x·W_iᵀ + b_i for linears that share the input x [rows, K]; each
  /// output [rows, N_i] is placed where the backend likes: in act(bufs[i]) by
  /// default (one linear() each), or, for a group fused by fuse(), in columns
  /// of one act(bufs[0]) buffer written by one fused call. ops, bufs and ys
  /// have one entry per linear.
  virtual void linear_group(std::span<const Linear* const> ops, Act x, int64_t rows, std::span<const Buf> bufs,
                            std::span<Act> ys) {
    for (size_t i = 0; i < ops.size(); ++i) {
      ys[i] = act(bufs[i], ops[i]->out_features());
      linear(*ops[i], x, rows, ys[i]);
    }
  }
  /// Per-head RMSNorm in place (Qwen3's q_norm / k_norm, applied before RoPE):
  /// every head vector v (head_dim values) of q [n, q_heads·head_dim] becomes
  /// v / sqrt(mean(v²) + eps) · q_w, and of k [n, k_heads·head_dim] the same
  /// with k_w (q_w, k_w: F32 [head_dim]).
  virtual void qk_norm(Act q, int64_t q_heads, Act k, int64_t k_heads, int64_t head_dim, const Param& q_w,
                       const Param& k_w, float eps) = 0;
  /// Rotates q (q_heads heads) and k (k_heads heads) of every row at its position.
  virtual void rope(Act q, int64_t q_heads, Act k, int64_t k_heads, int64_t head_dim, const Rope& r) = 0;
  /// Writes every row's keys and values (kv_heads·head_dim each) into layer
  /// `layer` of its sequence's cache at its position.
  virtual void store_kv(int64_t layer, Act k, Act v) = 0;
  /// rope(q, q_heads, k, k_heads, head_dim, r) then store_kv(layer, k, v):
  /// one kernel on CUDA (the default runs the two ops).
  virtual void rope_store_kv(int64_t layer, Act q, int64_t q_heads, Act k, Act v, int64_t k_heads, int64_t head_dim,
                             const Rope& r) {
    rope(q, q_heads, k, k_heads, head_dim, r);
    store_kv(layer, k, v);
  }
  /// Causal attention of every row over its sequence's cache (positions <= its own), within a sliding window
  /// of `window` positions when window > 0 (the row at position i sees positions i − window < j <= i;
  /// layer_window of the config), else over every earlier position. softcap > 0: Gemma 2's tanh soft-capping
  /// of the scores (ModelConfig::attn_logit_softcapping): every score s = scale · q·k becomes
  /// softcap · tanh(s / softcap) before the causal / window mask and the softmax (transformers' Gemma2
  /// eager_attention_forward); 0: none.
  virtual void attention(int64_t layer, Act q, int64_t q_heads, float scale, Act out, int64_t window,
                         float softcap) = 0;
  /// gate[:, :f] = silu(gate)·up (SwiGLU). Read the result only through the
  /// next op (the architectures pass it to the down projection): the CUDA
  /// backend may compute it inside that op (a 4-bit decode GEMV stages
  /// silu(gate)·up itself) and leave gate as it was.
  virtual void swiglu(Act gate, Act up, int64_t f) = 0;
  /// x[:, :f] = GELU(x): tanh approximation, or the erf form when exact.
  virtual void gelu(Act x, int64_t f, bool exact) = 0;
  /// gate[:, :f] = GELU(gate)·up (GeGLU, Shazeer 2020; Gemma's MLP): tanh approximation, or the erf form when
  /// exact. gate, up: [n, f].
  virtual void geglu(Act gate, Act up, int64_t f, bool exact) = 0;
  /// y[r] = RMSNorm(y[r])·w for the n rows of y [n, d] in place (Gemma's post_attention_layernorm /
  /// post_feedforward_layernorm on a sub-layer's output before its residual add); w: F32 [d].
  virtual void rms_norm_rows(Act y, const Param& w, float eps, int64_t d) = 0;
  /// x[r] *= s for the n rows of the residual stream x [n, d] (Gemma's embedding scale).
  virtual void scale_residual(float* x, float s, int64_t d) = 0;
  /// The step's logits from the normed hidden rows h [rows, d] (the last
  /// `rows` rows of the step): rows.logits when the step ends.
  virtual void lm_head(const Linear& op, Act h, int64_t rows) = 0;
};

/// The CPU backend (F32, the cpu:: ops and Linear::forward).
std::unique_ptr<Backend> make_cpu_backend(const ExecContext& ctx);
/// The CUDA backend on the current device (src/gpu/cuda_backend.cpp). In a
/// CPU-only build: throws Unsupported ("... needs the CUDA backend, but this
/// build is CPU-only ...").
std::unique_ptr<Backend> make_cuda_backend(const ExecContext& ctx);

}  // namespace kq::models
