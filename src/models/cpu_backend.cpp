// The CPU backend: the architectures' ops in F32 with the cpu:: kernels and
// Linear::forward. Rows of a step are grouped into runs (consecutive rows of
// one sequence at consecutive positions: a whole prefill chunk is one run, a
// batched decode step one run per sequence), and position-dependent ops
// (RoPE, KV-cache writes, attention) run per run, so prefill executes exactly
// the calls the model code made before the backend interface existed.
#include <algorithm>
#include <cstring>
#include <vector>

#include "kernels/cpu/ops_activation.hpp"
#include "kernels/cpu/ops_attention.hpp"
#include "kernels/cpu/ops_norm.hpp"
#include "kernels/cpu/ops_rope.hpp"
#include "kq/error.hpp"
#include "models/backend.hpp"
#include "models/common.hpp"

namespace kq::models {

Rope make_rope(double theta, int64_t head_dim, int64_t positions, const RopeScaling& scaling, int64_t rotary_dim,
               int64_t long_from) {
  Rope r;
  r.table = cpu::make_rope_table(theta, head_dim, positions, scaling, rotary_dim, long_from);
  const Shape shape{positions, r.table.rotary_dim / 2};
  r.cos.host = Tensor::empty(DType::F32, shape);
  r.sin.host = Tensor::empty(DType::F32, shape);
  std::copy(r.table.cos.begin(), r.table.cos.end(), r.cos.host.mutable_data<float>());
  std::copy(r.table.sin.begin(), r.table.sin.end(), r.sin.host.mutable_data<float>());
  return r;
}

namespace {

float* f32(Act a) { return static_cast<float*>(a.p); }

/// Consecutive rows [first, first + n) of sequence `seq` at positions pos0 .. pos0+n−1.
struct Run {
  int64_t first = 0, n = 0;
  int32_t seq = 0;
  int64_t pos0 = 0;
};

class CpuBackend final : public Backend {
 public:
  explicit CpuBackend(const ExecContext& ctx) : ctx_(ctx) {}

  Device device() const override { return Device::CPU; }
  int64_t max_rows() const override { return Model::prefill_chunk(); }
  void upload(Param&, ParamKind) override {}
  bool share_table(Param&, const Linear&) override { return false; }
  std::unique_ptr<Linear> convert(const std::string&, const Linear&) override { return nullptr; }
  std::shared_ptr<void> alloc_cache(size_t) override { return nullptr; }
  void copy_cache(void*, size_t, const void*, size_t, size_t, size_t) override {
    raise<Unsupported>("CpuBackend::copy_cache: host KV caches grow by KVCache::reserve");
  }
  void set_context(const ExecContext& ctx) override { ctx_ = ctx; }
  void set_graphs(bool) override {}

  void run(const StepRows& rows, const std::function<void(Backend&)>& body) override {
    rows_ = rows;
    n_ = int64_t(rows.tokens.size());
    threads_ = resolve_threads(ctx_.threads);
    runs_.clear();
    for (int64_t r = 0; r < n_; ++r) {
      const int32_t seq = rows.row_seq[size_t(r)];
      const int64_t pos = rows.row_pos[size_t(r)];
      if (!runs_.empty() && runs_.back().seq == seq && runs_.back().pos0 + runs_.back().n == pos)
        ++runs_.back().n;
      else
        runs_.push_back(Run{r, 1, seq, pos});
    }
    body(*this);
  }

  float* residual(int64_t d) override { return residual_.get(size_t(n_ * d)); }

  Act act(Buf b, int64_t cols) override {
    return Act{bufs_[size_t(b)].get(size_t(n_ * cols)), cols, int64_t(sizeof(float))};
  }

  void embed(const Param& table, const Param* pos_table, float* x, int64_t d) override {
    // Rows of a 16-bit table (a quantized model's) are converted exactly; the
    // sum with the position row is the same F32 addition as for F32 tables.
    const Tensor& t = table.host;
    const size_t row_bytes = size_t(d) * dtype_size(t.dtype());
    float* pe = pos_table ? pos_row_.get(size_t(d)) : nullptr;
    for (int64_t r = 0; r < n_; ++r) {
      float* xr = x + r * d;
      const auto* te = static_cast<const std::byte*>(t.raw()) + size_t(rows_.tokens[size_t(r)]) * row_bytes;
      convert_to_f32(t.dtype(), te, xr, size_t(d));
      if (pos_table) {
        const Tensor& p = pos_table->host;
        const auto* row = static_cast<const std::byte*>(p.raw()) +
                          size_t(rows_.row_pos[size_t(r)]) * size_t(d) * dtype_size(p.dtype());
        convert_to_f32(p.dtype(), row, pe, size_t(d));
        for (int64_t j = 0; j < d; ++j) xr[j] += pe[j];
      }
    }
  }

  void rms_norm(float* x, Act add, const Param& w, float eps, Act out, int64_t rows, int64_t d) override {
    require_dense(add, d, "rms_norm input");
    require_dense(out, d, "rms_norm output");
    if (add) add_inplace(x, f32(add), rows * d, threads_);
    cpu::rms_norm(x, rows, d, w.host.data<float>(), eps, f32(out), threads_);
  }

  void layer_norm(float* x, Act add, const Param& gamma, const Param& beta, float eps, Act out, int64_t rows,
                  int64_t d) override {
    require_dense(add, d, "layer_norm input");
    require_dense(out, d, "layer_norm output");
    if (add) add_inplace(x, f32(add), rows * d, threads_);
    cpu::layer_norm(x, rows, d, gamma.host.data<float>(), beta.host.data<float>(), eps, f32(out), threads_);
  }

  void linear(const Linear& op, Act x, int64_t rows, Act y) override {
    require_dense(x, op.in_features(), "linear input");
    require_dense(y, op.out_features(), "linear output");
    op.forward(f32(x), rows, f32(y), ctx_);
  }

  void qk_norm(Act q, int64_t q_heads, Act k, int64_t k_heads, int64_t head_dim, const Param& q_w, const Param& k_w,
               float eps) override {
    // Heads are adjacent in a dense row: n·heads vectors of head_dim, normed in place.
    require_dense(q, q_heads * head_dim, "qk_norm q");
    require_dense(k, k_heads * head_dim, "qk_norm k");
    cpu::rms_norm(f32(q), n_ * q_heads, head_dim, q_w.host.data<float>(), eps, f32(q), threads_);
    cpu::rms_norm(f32(k), n_ * k_heads, head_dim, k_w.host.data<float>(), eps, f32(k), threads_);
  }

  void rope(Act q, int64_t q_heads, Act k, int64_t k_heads, int64_t, const Rope& r) override {
    for (const Run& run : runs_) {
      cpu::apply_rope(f32(q.row(run.first)), run.n, q_heads, q.ld, run.pos0, r.table);
      if (k) cpu::apply_rope(f32(k.row(run.first)), run.n, k_heads, k.ld, run.pos0, r.table);
    }
  }

  void store_kv(int64_t layer, Act k, Act v) override {
    if (k.ld != v.ld) raise<Error>("CPU backend: keys and values need one row stride ({} vs {})", k.ld, v.ld);
    for (const Run& run : runs_)
      models::store_kv(cache(run), layer, run.pos0, run.n, f32(k.row(run.first)), f32(v.row(run.first)), k.ld);
  }

  void attention(int64_t layer, Act q, int64_t q_heads, float scale, Act out, int64_t window,
                 float softcap) override {
    for (const Run& run : runs_) {
      KVCache& c = cache(run);
      const cpu::AttentionDims dims{q_heads, c.num_kv_heads(), c.head_dim()};
      // Sized once for a full chunk over the whole cache, so the buffer grows
      // only on the first step (no allocation while decoding).
      float* scratch = attn_.get(
          size_t(cpu::attention_scratch_floats(dims, Model::prefill_chunk(), c.capacity(), threads_)));
      cpu::causal_attention(f32(q.row(run.first)), q.ld, run.n, run.pos0, c.keys(layer), c.values(layer),
                            c.capacity(), dims, scale, f32(out.row(run.first)), out.ld, scratch, threads_,
                            window, softcap);
    }
  }

  void swiglu(Act gate, Act up, int64_t f) override {
    require_dense(gate, f, "swiglu gate");
    require_dense(up, f, "swiglu up");
    cpu::swiglu_inplace(f32(gate), f32(up), n_ * f, threads_);
  }

  void gelu(Act x, int64_t f, bool exact) override {
    require_dense(x, f, "gelu input");
    if (exact)
      cpu::gelu_erf_inplace(f32(x), n_ * f, threads_);
    else
      cpu::gelu_new_inplace(f32(x), n_ * f, threads_);
  }

  void geglu(Act gate, Act up, int64_t f, bool exact) override {
    require_dense(gate, f, "geglu gate");
    require_dense(up, f, "geglu up");
    cpu::geglu_inplace(f32(gate), f32(up), n_ * f, exact, threads_);
  }

  void rms_norm_rows(Act y, const Param& w, float eps, int64_t d) override {
    require_dense(y, d, "rms_norm_rows input");
    cpu::rms_norm(f32(y), n_, d, w.host.data<float>(), eps, f32(y), threads_);  // in place, row by row
  }

  void scale_residual(float* x, float s, int64_t d) override {
    const int64_t count = n_ * d;
#pragma omp parallel for num_threads(threads_) schedule(static) if (count >= (1 << 16) && threads_ > 1)
    for (int64_t i = 0; i < count; ++i) x[i] *= s;
  }

  void lm_head(const Linear& op, Act h, int64_t rows) override {
    require_dense(h, op.in_features(), "lm_head input");
    if (rows_.logits) op.forward(f32(h), rows, rows_.logits, ctx_);
  }

 private:
  /// Linear::forward and the element-wise CPU ops take dense [rows, cols] buffers.
  static void require_dense(Act a, int64_t cols, const char* what) {
    if (a && a.ld != cols) raise<Error>("CPU backend: {} has row stride {}, expected {}", what, a.ld, cols);
  }
  KVCache& cache(const Run& run) const { return *rows_.caches[size_t(run.seq)]; }

  ExecContext ctx_;
  int threads_ = 1;
  StepRows rows_;
  int64_t n_ = 0;
  std::vector<Run> runs_;
  Scratch residual_, attn_, pos_row_;
  std::array<Scratch, size_t(Buf::Count)> bufs_;
};

}  // namespace

std::unique_ptr<Backend> make_cpu_backend(const ExecContext& ctx) { return std::make_unique<CpuBackend>(ctx); }

}  // namespace kq::models
