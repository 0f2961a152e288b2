// The CUDA model backend (models::Backend on the GPU): the architectures'
// ops with the kernels of kernels/cuda/model_ops.hpp and gpu::CudaLinear.
// Residual stream F32, activations BF16, KV caches BF16, all in device memory;
// the host only uploads each step's metadata (tokens, per-row sequence and
// position, the caches' per-layer K/V pointers) in one copy and downloads
// the logits.
//
// Decode steps (StepRows::graphable) run in CUDA graphs: per step shape (rows,
// cache capacity, logits flags) the first step runs eagerly in its own
// workspace (warm-up: buffers, cuBLASLt plans and Linear scratch reach their
// final size), the second is captured, and every later step uploads its
// metadata into the same device buffers and replays the graph. Attention is
// captured with max_len = the cache capacity (kernels read each row's true
// length from the device metadata). Each shape owns its workspace and
// GpuContext, so nothing a graph points at is ever reallocated. RMSNorm and
// SwiGLU launches wait for the next op, so a W8A8 linear's per-token
// quantization can run in the kernel that produces its input
// (deferred_producer.hpp).
#include <cuda_runtime_api.h>

#include <algorithm>
#include <array>
#include <cstdlib>
#include <cstring>
#include <map>
#include <tuple>
#include <vector>

#include "gpu/cuda_linear.hpp"
#include "gpu/cuda_linear_random.hpp"
#include "gpu/deferred_producer.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/gpu_context.hpp"
#include "kernels/cuda/model_ops.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"
#include "models/backend.hpp"

namespace kq::gpu {
namespace {

using models::Act;
using models::Buf;
using models::Param;
using models::ParamKind;
using models::StepRows;

/// Rows per step (prefill chunk) on the GPU.
constexpr int64_t kMaxRows = 1024;
/// Step shapes whose graphs are kept; more are dropped all at once.
constexpr size_t kMaxGraphs = 16;

uint16_t* bf16(Act a) { return static_cast<uint16_t*>(a.p); }

/// Page-locked host memory (cudaMallocHost), grow-only: the metadata upload and the logits' download.
class PinnedBuffer {
 public:
  PinnedBuffer() = default;
  PinnedBuffer(const PinnedBuffer&) = delete;
  PinnedBuffer& operator=(const PinnedBuffer&) = delete;
  ~PinnedBuffer() {
    if (p_) cudaFreeHost(p_);
  }
  std::byte* get(size_t bytes) {
    if (bytes > n_) {
      if (p_) cudaFreeHost(p_);
      p_ = nullptr;
      n_ = 0;
      void* p = nullptr;
      KQ_CUDA_CHECK(cudaMallocHost(&p, bytes));
      p_ = static_cast<std::byte*>(p);
      n_ = bytes;
    }
    return p_;
  }

 private:
  std::byte* p_ = nullptr;
  size_t n_ = 0;
};

/// Grows a device buffer to at least n elements (contents discarded).
template <class T>
T* grow(cuda::DeviceBuffer<T>& b, size_t n) {
  if (n > b.size()) {
    KQ_CUDA_CHECK(cudaDeviceSynchronize());  // the old buffer may still be read
    b.reserve_discard(n);
  }
  return b.data();
}

/// Everything one step runs in: its GpuContext (cuBLASLt plans, Linear
/// scratch), activations, metadata and logits. The eager path shares one;
/// each captured step shape owns one.
struct Workspace {
  explicit Workspace(cudaStream_t stream) : ctx(stream) {}
  cuda::GpuContext ctx;
  cuda::DeviceBuffer<float> residual;
  std::array<cuda::DeviceBuffer<uint16_t>, size_t(Buf::Count)> bufs;
  cuda::DeviceBuffer<std::byte> meta;  // tokens | row_seq | row_pos | K/V pointer tables
  PinnedBuffer host_meta;
  cuda::DeviceBuffer<std::byte> attention;
  cuda::DeviceBuffer<uint16_t> logits_bf16;
  cuda::DeviceBuffer<float> logits_f32;
  PinnedBuffer host_logits;  // the step's copy of logits_f32 (a graph captures its address)
  // Set up per step (device pointers into `meta`).
  const int32_t* tokens = nullptr;
  const int32_t* row_seq = nullptr;
  const int32_t* row_pos = nullptr;
  uint16_t* const* kv = nullptr;  // [layers][2][caches]
  int64_t logit_rows = 0, vocab = 0;
};

/// What a captured graph depends on besides the workspace it runs in.
struct GraphKey {
  int64_t rows, capacity, caches, layers;
  bool logits, last_only;
  bool operator<(const GraphKey& o) const {
    return std::tie(rows, capacity, caches, layers, logits, last_only) <
           std::tie(o.rows, o.capacity, o.caches, o.layers, o.logits, o.last_only);
  }
};

struct GraphEntry {
  std::unique_ptr<Workspace> ws;
  bool warmed = false;
  cudaGraphExec_t exec = nullptr;
};

/// KQ_CUDA_STEP_TIMING=1: CUDA events around every graph replay (diagnostics, Model::cuda_graph_gpu_ms).
bool step_timing_by_env() {
  const char* e = std::getenv("KQ_CUDA_STEP_TIMING");
  return e && std::strcmp(e, "1") == 0;
}

/// A pair of CUDA events (timing enabled) around one stretch of a stream.
class EventPair {
 public:
  EventPair() {
    KQ_CUDA_CHECK(cudaEventCreate(&begin_));
    const cudaError_t e = cudaEventCreate(&end_);
    if (e != cudaSuccess) cudaEventDestroy(begin_);
    KQ_CUDA_CHECK(e);
  }
  ~EventPair() {
    cudaEventDestroy(begin_);
    cudaEventDestroy(end_);
  }
  EventPair(const EventPair&) = delete;
  EventPair& operator=(const EventPair&) = delete;
  cudaEvent_t begin() const { return begin_; }
  cudaEvent_t end() const { return end_; }
  /// Milliseconds between the two (both recorded and complete).
  float ms() const {
    float v = 0;
    KQ_CUDA_CHECK(cudaEventElapsedTime(&v, begin_, end_));
    return v;
  }

 private:
  cudaEvent_t begin_ = nullptr, end_ = nullptr;
};

bool graphs_allowed_by_env() {
  const char* e = std::getenv("KQ_CUDA_GRAPHS");
  return !(e && (std::strcmp(e, "0") == 0 || std::strcmp(e, "off") == 0 || std::strcmp(e, "false") == 0));
}

class CudaBackend final : public models::Backend {
 public:
  explicit CudaBackend(const ExecContext& ctx) : ctx_(ctx) {
    KQ_CUDA_CHECK(cudaStreamCreateWithFlags(&stream_, cudaStreamNonBlocking));
    eager_ = std::make_unique<Workspace>(stream_);
  }
  ~CudaBackend() override {
    cudaStreamSynchronize(stream_);
    clear_graphs();
    eager_.reset();
    cudaStreamDestroy(stream_);
  }
  CudaBackend(const CudaBackend&) = delete;
  CudaBackend& operator=(const CudaBackend&) = delete;

  Device device() const override { return Device::CUDA; }
  int64_t max_rows() const override { return kMaxRows; }
  void set_context(const ExecContext& ctx) override { ctx_ = ctx; }
  void set_graphs(bool enabled) override { graphs_ = enabled; }
  int64_t graph_replays() const override { return replays_; }
  double graph_gpu_ms() const override { return replay_gpu_ms_; }

  void upload(Param& p, ParamKind kind) override {
    const Tensor& t = p.host;
    const size_t n = size_t(t.numel());
    cuda::DeviceBuffer<std::byte> buf;
    if (kind == ParamKind::Table) {
      // BF16 on the device. The host table is F32, or BF16/F16 in a quantized
      // model (Model::hold_unquantized_in_disk_dtype): BF16 is copied as it
      // is; F32 and F16 values are rounded to BF16 (nearest even) as before.
      std::vector<uint16_t> h;
      const uint16_t* src16 = t.data<uint16_t>();
      if (t.dtype() != DType::BF16) {
        h.resize(n);
        if (t.dtype() == DType::F16)
          for (size_t i = 0; i < n; ++i) h[i] = f32_to_bf16(f16_to_f32(src16[i]));
        else
          for (size_t i = 0; i < n; ++i) h[i] = f32_to_bf16(t.data<float>()[i]);
        src16 = h.data();
      }
      buf.reserve_discard(n * sizeof(uint16_t));
      KQ_CUDA_CHECK(cudaMemcpy(buf.data(), src16, n * sizeof(uint16_t), cudaMemcpyHostToDevice));
    } else {
      buf.reserve_discard(n * sizeof(float));
      KQ_CUDA_CHECK(cudaMemcpy(buf.data(), t.data<float>(), n * sizeof(float), cudaMemcpyHostToDevice));
    }
    p.device = buf.data();
    p.device_bytes = buf.bytes();
    params_.push_back(std::move(buf));
  }

  bool share_table(Param& p, const Linear& op) override {
    const auto* dev = dynamic_cast<const CudaLinear*>(&op);
    auto w = dev ? dev->bf16_weight() : nullptr;
    if (!w || p.host.ndim() != 2 || w->size() != size_t(p.host.numel()) || op.out_features() != p.host.shape()[0] ||
        op.in_features() != p.host.shape()[1])
      return false;
    // Same values: the op's weight was rounded from the same host tensor as upload() rounds a table (F32 or F16
    // to BF16, nearest even; BF16 copied), and is [N, K] row-major like a table's [rows, cols].
    p.device = w->data();
    p.device_bytes = 0;  // counted once, in the linear's weight_bytes()
    shared_tables_.push_back(std::move(w));
    return true;
  }

  std::unique_ptr<Linear> convert(const std::string& name, const Linear& op) override {
    if (dynamic_cast<const CudaLinear*>(&op)) return nullptr;
    try {
      return to_cuda(op, eager_->ctx);
    } catch (const Unsupported& e) {
      raise<Unsupported>("layer '{}' cannot run on CUDA: {}", name, e.what());
    }
  }

  void fuse(std::span<std::unique_ptr<Linear>* const> slots) override {
    std::vector<const CudaLinear*> ops;
    for (auto* slot : slots) {
      const auto* op = dynamic_cast<const CudaLinear*>(slot->get());
      if (!op) return;  // a CPU op swapped in: to_device converts it first
      ops.push_back(op);
    }
    auto parts = fuse_cuda_linears(ops);
    if (parts.empty()) return;  // not fusable: the ops run one by one
    clear_graphs();             // captured steps call the old ops
    for (size_t i = 0; i < parts.size(); ++i) *slots[i] = std::move(parts[i]);
  }

  std::unique_ptr<Linear> random_linear(const std::string& mode, int64_t N, int64_t K, uint64_t seed) override {
    return random_cuda_linear(mode, N, K, seed, eager_->ctx);
  }

  std::shared_ptr<void> alloc_cache(size_t bytes) override {
    void* p = nullptr;
    KQ_CUDA_CHECK(cudaMalloc(&p, bytes));
    std::shared_ptr<void> mem(p, [](void* q) { cudaFree(q); });
    KQ_CUDA_CHECK(cudaMemset(p, 0, bytes));
    return mem;
  }

  void copy_cache(void* dst, size_t dst_pitch, const void* src, size_t src_pitch, size_t block_bytes,
                  size_t blocks) override {
    // alloc_cache zero-fills on the legacy default stream, which a non-blocking stream does not wait for.
    KQ_CUDA_CHECK(cudaDeviceSynchronize());
    KQ_CUDA_CHECK(
        cudaMemcpy2DAsync(dst, dst_pitch, src, src_pitch, block_bytes, blocks, cudaMemcpyDeviceToDevice, stream_));
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
  }

  void run(const StepRows& rows, const std::function<void(Backend&)>& body) override {
    rows_ = rows;
    n_ = int64_t(rows.tokens.size());
    const KVCache& c0 = *rows.caches[0];
    layers_ = c0.num_layers();
    capacity_ = c0.capacity();
    for (const KVCache* c : rows.caches)
      if (c->capacity() != capacity_)
        raise<InvalidArgument>(
            "decode_batch on CUDA needs KV caches of one capacity (got {} and {}); make them with the same "
            "make_cache(max_tokens)",
            capacity_, c->capacity());
    int32_t max_pos = 0;
    for (int32_t p : rows.row_pos) max_pos = std::max(max_pos, p);

    if (!(rows.graphable && graphs_ && graphs_allowed_by_env())) {
      ws_ = eager_.get();
      max_len_ = int64_t(max_pos) + 1;
      upload_meta();
      ws_->logit_rows = 0;
      step(body);
      finish();
      return;
    }
    const GraphKey key{n_, capacity_, int64_t(rows.caches.size()), layers_, rows.logits != nullptr,
                       rows.last_only};
    auto it = graphs_by_key_.find(key);
    if (it == graphs_by_key_.end()) {
      if (graphs_by_key_.size() >= kMaxGraphs) clear_graphs();
      it = graphs_by_key_.emplace(key, GraphEntry{std::make_unique<Workspace>(stream_), false, nullptr}).first;
    }
    GraphEntry& g = it->second;
    ws_ = g.ws.get();
    max_len_ = capacity_;  // the graph serves every position of caches this size
    upload_meta();
    if (!g.warmed) {
      ws_->logit_rows = 0;
      step(body);  // warm-up: allocations and plans happen here, outside any capture
      g.warmed = true;
    } else {
      if (!g.exec) capture(g, body);
      if (timing_) KQ_CUDA_CHECK(cudaEventRecord(timing_->begin(), stream_));
      KQ_CUDA_CHECK(cudaGraphLaunch(g.exec, stream_));
      if (timing_) KQ_CUDA_CHECK(cudaEventRecord(timing_->end(), stream_));
      ++replays_;
      finish();
      if (timing_) replay_gpu_ms_ += timing_->ms();
      return;
    }
    finish();
  }

  // ---- ops -------------------------------------------------------------------
  // A buffer that grows is reallocated: the deferred op may point into it.
  float* residual(int64_t d) override {
    if (size_t(n_ * d) > ws_->residual.size()) deferred_.flush(stream_);
    return grow(ws_->residual, size_t(n_ * d));
  }

  Act act(Buf b, int64_t cols) override {
    cuda::DeviceBuffer<uint16_t>& buf = ws_->bufs[size_t(b)];
    if (size_t(n_ * cols) > buf.size()) deferred_.flush(stream_);
    return Act{grow(buf, size_t(n_ * cols)), cols, int64_t(sizeof(uint16_t))};
  }

  void embed(const Param& table, const Param* pos_table, float* x, int64_t d) override {
    deferred_.flush(stream_);
    cuda::embed_rows(dev16(table), pos_table ? dev16(*pos_table) : nullptr, ws_->tokens, ws_->row_pos, n_, d, x,
                     stream_);
  }

  void rms_norm(float* x, Act add, const Param& w, float eps, Act out, int64_t rows, int64_t d) override {
    deferred_.defer_rms_norm(x, add, dev32(w), eps, out, rows, d, stream_);
  }

  void layer_norm(float* x, Act add, const Param& gamma, const Param& beta, float eps, Act out, int64_t rows,
                  int64_t d) override {
    deferred_.flush(stream_);
    cuda::layer_norm(x, bf16(add), add.ld, dev32(gamma), dev32(beta), eps, bf16(out), out.ld, rows, d, stream_);
  }

  void linear(const Linear& op, Act x, int64_t rows, Act y) override {
    const auto* cl = dynamic_cast<const CudaLinear*>(&op);
    if (!cl)
      raise<Unsupported>(
          "a Linear of format '{}' runs on the CPU but the model is on CUDA (a layer was swapped after "
          "Model::to_device: call to_device again to convert it)",
          op.format());
    if (deferred_.linear_of_swiglu(*cl, x, rows, y, ws_->ctx)) return;
    const QuantizedScope scope(ws_->ctx, deferred_.produce_for(*cl, x, rows, ws_->ctx));
    cl->forward_device(ws_->ctx, bf16(x), x.ld, rows, bf16(y), y.ld);
  }

  /// A group whose ops are, in order, all the parts of one fused op runs that
  /// op once into act(bufs[0]); any other group runs op by op.
  void linear_group(std::span<const Linear* const> ops, Act x, int64_t rows, std::span<const Buf> bufs,
                    std::span<Act> ys) override {
    const auto* first = dynamic_cast<const CudaLinearPart*>(ops[0]);
    bool whole = first != nullptr && first->col0() == 0;
    int64_t cols = 0;
    for (size_t i = 0; whole && i < ops.size(); ++i) {
      const auto* p = dynamic_cast<const CudaLinearPart*>(ops[i]);
      whole = p && p->whole() == first->whole() && p->col0() == cols;
      if (whole) cols += p->out_features();
    }
    if (!whole || cols != first->whole()->out_features()) return Backend::linear_group(ops, x, rows, bufs, ys);
    const Act y = act(bufs[0], cols);
    // The fused op is the only reader of x: a norm producing it may be folded in.
    if (!deferred_.linear_of_rms_norm(*first->whole(), x, rows, y, ws_->ctx)) {
      const QuantizedScope scope(ws_->ctx, deferred_.produce_for(*first->whole(), x, rows, ws_->ctx));
      first->whole()->forward_device(ws_->ctx, bf16(x), x.ld, rows, bf16(y), y.ld);
    }
    for (size_t i = 0; i < ops.size(); ++i)
      ys[i] = y.col(static_cast<const CudaLinearPart*>(ops[i])->col0());
  }

  void qk_norm(Act q, int64_t q_heads, Act k, int64_t k_heads, int64_t head_dim, const models::Param& q_w,
               const models::Param& k_w, float eps) override {
    deferred_.flush(stream_);
    cuda::qk_norm(bf16(q), q.ld, int(q_heads), bf16(k), k.ld, int(k_heads), int(head_dim), dev32(q_w), dev32(k_w),
                  eps, n_, stream_);
  }

  void rope(Act q, int64_t q_heads, Act k, int64_t k_heads, int64_t head_dim, const models::Rope& r) override {
    deferred_.flush(stream_);
    cuda::rope(bf16(q), q.ld, int(q_heads), bf16(k), k.ld, int(k_heads), int(head_dim), dev32(r.cos),
               dev32(r.sin), ws_->row_pos, n_, stream_, int(r.table.rotary_dim));
  }

  void store_kv(int64_t layer, Act k, Act v) override {
    deferred_.flush(stream_);
    cuda::store_kv(bf16(k), k.ld, bf16(v), v.ld, view(layer), ws_->row_seq, ws_->row_pos, n_, stream_);
  }

  void rope_store_kv(int64_t layer, Act q, int64_t q_heads, Act k, Act v, int64_t k_heads, int64_t head_dim,
                     const models::Rope& r) override {
    deferred_.flush(stream_);
    const cuda::KVLayerView kv = view(layer);
    if (kv.kv_heads != k_heads || kv.head_dim != head_dim)
      raise<InvalidArgument>("rope_store_kv: {} heads of {} for a cache of {} heads of {}", k_heads, head_dim,
                             kv.kv_heads, kv.head_dim);
    cuda::rope_store_kv(bf16(q), q.ld, int(q_heads), bf16(k), k.ld, bf16(v), v.ld, kv, dev32(r.cos), dev32(r.sin),
                        ws_->row_seq, ws_->row_pos, n_, stream_, int(r.table.rotary_dim));
  }

  void attention(int64_t layer, Act q, int64_t q_heads, float scale, Act out, int64_t window,
                 float softcap) override {
    deferred_.flush(stream_);
    const cuda::KVLayerView kv = view(layer);
    const size_t bytes = cuda::attention_workspace_bytes(n_, int(q_heads), kv.head_dim, capacity_);
    void* ws = bytes ? grow(ws_->attention, bytes) : nullptr;
    cuda::causal_attention(bf16(q), q.ld, int(q_heads), kv, ws_->row_seq, ws_->row_pos, n_, max_len_, scale,
                           bf16(out), out.ld, ws, stream_, cuda::AttentionPath::Auto, window, softcap);
  }

  void swiglu(Act gate, Act up, int64_t f) override { deferred_.defer_swiglu(gate, up, n_, f, stream_); }

  void geglu(Act gate, Act up, int64_t f, bool exact) override {
    deferred_.flush(stream_);
    cuda::geglu(bf16(gate), gate.ld, bf16(up), up.ld, bf16(gate), gate.ld, n_, f, exact, stream_);
  }

  void rms_norm_rows(Act y, const Param& w, float eps, int64_t d) override {
    deferred_.flush(stream_);
    cuda::rms_norm_rows(bf16(y), y.ld, dev32(w), eps, n_, d, stream_);
  }

  void scale_residual(float* x, float s, int64_t d) override {
    deferred_.flush(stream_);
    cuda::scale_rows(x, s, n_, d, stream_);
  }

  void gelu(Act x, int64_t f, bool exact) override {
    deferred_.flush(stream_);
    if (exact)
      raise<Unsupported>(
          "the exact (erf) GELU activation 'gelu' has no CUDA kernel yet; GPT-2 models with gelu_new / "
          "gelu_pytorch_tanh run on CUDA");
    cuda::gelu_tanh_inplace(bf16(x), x.ld, n_, f, stream_);
  }

  void lm_head(const Linear& op, Act h, int64_t rows) override {
    const int64_t vocab = op.out_features();
    uint16_t* y = grow(ws_->logits_bf16, size_t(rows * vocab));
    const Act out{y, vocab, int64_t(sizeof(uint16_t))};
    // h is read by the lm_head only: a norm producing it may be folded in.
    const auto* cl = dynamic_cast<const CudaLinear*>(&op);
    if (!cl || !deferred_.linear_of_rms_norm(*cl, h, rows, out, ws_->ctx)) linear(op, h, rows, out);
    cuda::bf16_to_f32(y, grow(ws_->logits_f32, size_t(rows * vocab)), rows * vocab, stream_);
    ws_->logit_rows = rows;
    ws_->vocab = vocab;
    // The download is part of the step (and of its graph): into pinned memory,
    // a DMA right after the last kernel; finish() copies it to the caller.
    if (rows_.logits) {
      const size_t bytes = size_t(rows * vocab) * sizeof(float);
      KQ_CUDA_CHECK(cudaMemcpyAsync(ws_->host_logits.get(bytes), ws_->logits_f32.data(), bytes,
                                    cudaMemcpyDeviceToHost, stream_));
    }
  }

 private:
  /// The architecture's forward, then the op it left deferred.
  void step(const std::function<void(Backend&)>& body) {
    try {
      body(*this);
    } catch (...) {
      deferred_ = DeferredProducer{};  // never launch a half step's op into the next one
      throw;
    }
    deferred_.flush(stream_);
  }

  static const uint16_t* dev16(const Param& p) { return static_cast<const uint16_t*>(p.device); }
  static const float* dev32(const Param& p) { return static_cast<const float*>(p.device); }

  cuda::KVLayerView view(int64_t layer) const {
    const int64_t nc = int64_t(rows_.caches.size());
    const KVCache& c0 = *rows_.caches[0];
    cuda::KVLayerView v;
    v.k = ws_->kv + (2 * layer) * nc;
    v.v = ws_->kv + (2 * layer + 1) * nc;
    v.capacity = capacity_;
    v.kv_heads = int(c0.num_kv_heads());
    v.head_dim = int(c0.head_dim());
    return v;
  }

  /// Packs tokens, row_seq, row_pos and the caches' K/V pointers into pinned
  /// memory and copies them to the workspace's metadata buffer (one copy).
  void upload_meta() {
    const int64_t nc = int64_t(rows_.caches.size());
    const size_t ints = size_t(3 * n_);
    const size_t ptr_off = (ints * sizeof(int32_t) + 15) & ~size_t(15);
    const size_t bytes = ptr_off + size_t(2 * layers_ * nc) * sizeof(uint16_t*);
    std::byte* h = ws_->host_meta.get(bytes);
    auto* hi = reinterpret_cast<int32_t*>(h);
    std::memcpy(hi, rows_.tokens.data(), size_t(n_) * sizeof(int32_t));
    std::memcpy(hi + n_, rows_.row_seq.data(), size_t(n_) * sizeof(int32_t));
    std::memcpy(hi + 2 * n_, rows_.row_pos.data(), size_t(n_) * sizeof(int32_t));
    std::vector<uint16_t*> ptrs(size_t(2 * layers_ * nc));
    for (int64_t l = 0; l < layers_; ++l)
      for (int64_t s = 0; s < nc; ++s) {
        ptrs[size_t((2 * l) * nc + s)] = rows_.caches[size_t(s)]->device_keys(l);
        ptrs[size_t((2 * l + 1) * nc + s)] = rows_.caches[size_t(s)]->device_values(l);
      }
    std::memcpy(h + ptr_off, ptrs.data(), ptrs.size() * sizeof(uint16_t*));
    std::byte* d = grow(ws_->meta, bytes);
    KQ_CUDA_CHECK(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, stream_));
    ws_->tokens = reinterpret_cast<const int32_t*>(d);
    ws_->row_seq = ws_->tokens + n_;
    ws_->row_pos = ws_->tokens + 2 * n_;
    ws_->kv = reinterpret_cast<uint16_t* const*>(d + ptr_off);
  }

  /// Delivers the logits (F32, to the caller's host buffer) and waits for the step.
  void finish() {
    KQ_CUDA_CHECK(cudaStreamSynchronize(stream_));
    if (rows_.logits && ws_->logit_rows > 0)
      std::memcpy(rows_.logits, ws_->host_logits.get(0), size_t(ws_->logit_rows * ws_->vocab) * sizeof(float));
  }

  void capture(GraphEntry& g, const std::function<void(Backend&)>& body) {
    cudaGraph_t graph = nullptr;
    KQ_CUDA_CHECK(cudaStreamBeginCapture(stream_, cudaStreamCaptureModeThreadLocal));
    try {
      step(body);
    } catch (...) {
      cudaStreamEndCapture(stream_, &graph);
      if (graph) cudaGraphDestroy(graph);
      throw;
    }
    KQ_CUDA_CHECK(cudaStreamEndCapture(stream_, &graph));
    const cudaError_t e = cudaGraphInstantiate(&g.exec, graph, 0);
    cudaGraphDestroy(graph);
    KQ_CUDA_CHECK(e);
  }

  void clear_graphs() {
    for (auto& [key, g] : graphs_by_key_)
      if (g.exec) cudaGraphExecDestroy(g.exec);
    graphs_by_key_.clear();
  }

  ExecContext ctx_;
  cudaStream_t stream_ = nullptr;
  std::unique_ptr<Workspace> eager_;
  std::map<GraphKey, GraphEntry> graphs_by_key_;
  std::vector<cuda::DeviceBuffer<std::byte>> params_;
  std::vector<std::shared_ptr<const cuda::DeviceBuffer<uint16_t>>> shared_tables_;  // share_table's weights
  bool graphs_ = true;
  int64_t replays_ = 0;
  double replay_gpu_ms_ = 0;  // with timing_: GPU time of the replays
  std::unique_ptr<EventPair> timing_ = step_timing_by_env() ? std::make_unique<EventPair>() : nullptr;
  // The step being run.
  StepRows rows_;
  Workspace* ws_ = nullptr;
  DeferredProducer deferred_;
  int64_t n_ = 0, layers_ = 0, capacity_ = 0, max_len_ = 0;
};

}  // namespace
}  // namespace kq::gpu

namespace kq::models {

std::unique_ptr<Backend> make_cuda_backend(const ExecContext& ctx) {
  int count = 0;
  const cudaError_t e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess || count == 0) {
    cudaGetLastError();  // clear the sticky-free error state
    raise<Unsupported>("running a model on 'cuda': no usable CUDA device ({})",
                       e != cudaSuccess ? cudaGetErrorString(e) : "no device found");
  }
  return std::make_unique<gpu::CudaBackend>(ctx);
}

}  // namespace kq::models
