// The CudaLinear ops: host entry, and one op per device weight layout (BF16,
// INT8 W8A8, FP8 E4M3 W8A8, W4A16), each adding the bias on the device.
#include "gpu/cuda_linear.hpp"

#include <cuda_runtime_api.h>

#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include "formats/fp8.hpp"
#include "gpu/cuda_linear_kernels.hpp"
#include "gpu/cuda_linear_ops.hpp"
#include "kernels/cuda/cuda_check.hpp"
#include "kernels/cuda/gemm_lt.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"

namespace kq::gpu {

CudaLinear::CudaLinear() = default;
CudaLinear::~CudaLinear() = default;

void CudaLinear::forward(const float* x, int64_t M, float* y, const ExecContext& ctx) const {
  (void)ctx;
  if (M <= 0) return;
  const int64_t K = in_features(), N = out_features();
  std::lock_guard<std::mutex> lock(host_mutex_);
  if (!host_ctx_) host_ctx_ = std::make_unique<cuda::GpuContext>(nullptr, size_t(4) << 20);
  std::vector<uint16_t> xb(size_t(M * K));
  for (size_t i = 0; i < xb.size(); ++i) xb[i] = f32_to_bf16(x[i]);
  cuda::DeviceBuffer<uint16_t> dx, dy(size_t(M * N));
  dx.upload(xb);
  forward_device(*host_ctx_, dx.data(), K, M, dy.data(), N);
  KQ_CUDA_CHECK(cudaStreamSynchronize(host_ctx_->stream()));
  const std::vector<uint16_t> yb = dy.download();
  for (size_t i = 0; i < yb.size(); ++i) y[i] = bf16_to_f32(yb[i]);
}

namespace {

/// Downloads a BF16 [N, K] device matrix as an F32 host tensor (exact).
Tensor bf16_matrix_to_f32(const cuda::DeviceBuffer<uint16_t>& d, int64_t N, int64_t K) {
  const std::vector<uint16_t> h = d.download(size_t(N * K));
  Tensor t = Tensor::empty(DType::F32, {N, K});
  float* p = t.mutable_data<float>();
  for (size_t i = 0; i < h.size(); ++i) p[i] = bf16_to_f32(h[i]);
  return t;
}

/// One buffer holding `parts` one after the other (device-to-device copies),
/// plus `spare` zeroed elements at the end.
template <class T>
cuda::DeviceBuffer<T> concat_buffers(const std::vector<const cuda::DeviceBuffer<T>*>& parts, size_t spare = 0) {
  size_t n = spare;
  for (const auto* b : parts) n += b->size();
  cuda::DeviceBuffer<T> out(n);
  size_t at = 0;
  for (const auto* b : parts) {
    if (!b->empty())
      KQ_CUDA_CHECK(cudaMemcpy(out.data() + at, b->data(), b->bytes(), cudaMemcpyDeviceToDevice));
    at += b->size();
  }
  if (spare) KQ_CUDA_CHECK(cudaMemset(out.data() + at, 0, spare * sizeof(T)));
  return out;
}

/// Shared state: shapes, format tag, device bias; forward_device checks the
/// arguments, runs the layout's matmul and adds the bias.
class CudaLinearBase : public CudaLinear {
 public:
  CudaLinearBase(int64_t N, int64_t K, cuda::DeviceBuffer<float> bias, std::string format)
      : N_(N), K_(K), bias_(std::move(bias)), format_(std::move(format)) {
    if (!bias_.empty() && bias_.size() != size_t(N))
      raise<InvalidArgument>("CudaLinear ({}): bias has {} values, expected N = {}", format_, bias_.size(), N);
  }
  int64_t in_features() const override { return K_; }
  int64_t out_features() const override { return N_; }
  std::string format() const override { return format_; }
  size_t weight_bytes() const override { return matrix_bytes() + bias_.bytes(); }
  Tensor bias() const override {
    if (bias_.empty()) return {};
    Tensor b = Tensor::empty(DType::F32, {N_});
    KQ_CUDA_CHECK(cudaMemcpy(b.mutable_data<float>(), bias_.data(), bias_.bytes(), cudaMemcpyDeviceToHost));
    return b;
  }

  void forward_device(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                      int64_t ldy) const final {
    if (M < 1 || ldx < K_ || ldy < N_)
      raise<InvalidArgument>("CudaLinear ({}, [{}, {}]): forward_device with M = {}, ldx = {}, ldy = {} "
                             "(need M >= 1, ldx >= K, ldy >= N)",
                             format_, N_, K_, M, ldx, ldy);
    if (!x || !y) raise<InvalidArgument>("CudaLinear ({}): forward_device with a null x or y", format_);
    matmul(ctx, x, ldx, M, y, ldy);
    if (!bias_.empty()) detail::add_bias_bf16(y, ldy, M, N_, bias_.data(), ctx.stream());
  }

  bool forward_swiglu(cuda::GpuContext& ctx, const uint16_t* gate, const uint16_t* up, uint16_t* y) const final {
    if (!gate || !up || !y) raise<InvalidArgument>("CudaLinear ({}): forward_swiglu with a null pointer", format_);
    if (!matmul_swiglu(ctx, gate, up, y)) return false;
    if (!bias_.empty()) detail::add_bias_bf16(y, N_, 1, N_, bias_.data(), ctx.stream());
    return true;
  }
  bool forward_rms_norm(cuda::GpuContext& ctx, const cuda::W4RmsNormInput& in, uint16_t* y) const final {
    if (!in.residual || !in.weight || !y)
      raise<InvalidArgument>("CudaLinear ({}): forward_rms_norm with a null pointer", format_);
    if (!matmul_rms_norm(ctx, in, y)) return false;
    if (!bias_.empty()) detail::add_bias_bf16(y, N_, 1, N_, bias_.data(), ctx.stream());
    return true;
  }

 protected:
  /// y = BF16(x · Wᵀ), arguments already checked.
  virtual void matmul(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
                      int64_t ldy) const = 0;
  /// Device bytes of the weight (codes, scales, zero points, padding).
  virtual size_t matrix_bytes() const = 0;
  /// y = BF16(BF16(silu(gate) · up) · Wᵀ) for one token, or false (nothing enqueued).
  virtual bool matmul_swiglu(cuda::GpuContext& ctx, const uint16_t* gate, const uint16_t* up, uint16_t* y) const {
    (void)ctx, (void)gate, (void)up, (void)y;
    return false;
  }
  /// y = BF16(BF16(RMSNorm(x + add) · weight) · Wᵀ) for one token, x += add written back, or false (nothing
  /// enqueued).
  virtual bool matmul_rms_norm(cuda::GpuContext& ctx, const cuda::W4RmsNormInput& in, uint16_t* y) const {
    (void)ctx, (void)in, (void)y;
    return false;
  }

 public:
  /// The rows of `ops` (this op first; every op of this op's concrete type,
  /// format and K, checked by fuse_cuda_linears) as one op, or nullptr with
  /// `why` set when this layout cannot concatenate them.
  virtual std::unique_ptr<CudaLinear> concat(const std::vector<const CudaLinearBase*>& ops,
                                             std::string& why) const = 0;
  const cuda::DeviceBuffer<float>& bias_buffer() const { return bias_; }

  /// The ops' biases one after the other (empty when none has one).
  static cuda::DeviceBuffer<float> concat_bias(const std::vector<const CudaLinearBase*>& ops) {
    std::vector<const cuda::DeviceBuffer<float>*> parts;
    for (const auto* o : ops) parts.push_back(&o->bias_);
    return concat_buffers(parts);
  }

 protected:

  int64_t N_, K_;
  cuda::DeviceBuffer<float> bias_;
  std::string format_;
};

class Bf16CudaLinear final : public CudaLinearBase {
 public:
  Bf16CudaLinear(cuda::DeviceBuffer<uint16_t> w, int64_t N, int64_t K, cuda::DeviceBuffer<float> bias,
                 std::string format)
      : CudaLinearBase(N, K, std::move(bias), std::move(format)),
        w_(std::make_shared<cuda::DeviceBuffer<uint16_t>>(std::move(w))) {
    if (N < 1 || K < 1 || w_->size() != size_t(N * K))
      raise<InvalidArgument>("CudaLinear ({}): BF16 weight of {} elements for shape [{}, {}]", format_, w_->size(),
                             N, K);
  }
  Tensor dequantized_weight() const override {
    return bf16_matrix_to_f32(*w_, N_, K_);
  }
  std::shared_ptr<const cuda::DeviceBuffer<uint16_t>> bf16_weight() const override { return w_; }

 protected:
  void matmul(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
              int64_t ldy) const override {
    cuda::gemm_bf16(ctx, x, ldx, w_->data(), K_, y, ldy, M, N_, K_);
  }
  size_t matrix_bytes() const override { return w_->bytes(); }

 public:
  std::unique_ptr<CudaLinear> concat(const std::vector<const CudaLinearBase*>& ops, std::string&) const override {
    std::vector<const cuda::DeviceBuffer<uint16_t>*> parts;
    int64_t N = 0;
    for (const auto* o : ops) {
      parts.push_back(static_cast<const Bf16CudaLinear*>(o)->w_.get());
      N += o->out_features();
    }
    return std::make_unique<Bf16CudaLinear>(concat_buffers(parts), N, K_, concat_bias(ops), format_);
  }

 private:
  std::shared_ptr<cuda::DeviceBuffer<uint16_t>> w_;  // shared with a tied embedding table (bf16_weight)
};

/// FP8 E4M3 or INT8 W8A8 on the padded W8Weight layout.
template <class Code>
class W8CudaLinear final : public CudaLinearBase {
 public:
  W8CudaLinear(cuda::W8Weight<Code> w, cuda::DeviceBuffer<float> bias, std::string format)
      : CudaLinearBase(w.N, w.K, std::move(bias), std::move(format)), w_(std::move(w)) {}
  Tensor dequantized_weight() const override {
    const std::vector<Code> codes = w_.codes.download();
    const std::vector<float> scales = w_.scale.download();
    Tensor t = Tensor::empty(DType::F32, {N_, K_});
    float* p = t.mutable_data<float>();
    for (int64_t n = 0; n < N_; ++n)
      for (int64_t k = 0; k < K_; ++k) {
        const Code c = codes[size_t(n * w_.K_pad + k)];
        float v;
        if constexpr (std::is_same_v<Code, int8_t>) {
          v = float(c);
        } else {
          v = formats::fp8_decode(c, FP8Format::E4M3);
        }
        p[n * K_ + k] = scales[size_t(n)] * v;
      }
    return t;
  }

 protected:
  void matmul(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
              int64_t ldy) const override {
    if constexpr (std::is_same_v<Code, int8_t>) {
      cuda::int8_w8a8_linear(ctx, w_, x, ldx, M, y, ldy);
    } else {
      cuda::fp8_w8a8_linear(ctx, w_, x, ldx, M, y, ldy, cuda::Fp8Path::Auto);
    }
  }
  size_t matrix_bytes() const override { return w_.bytes(); }

 public:
  InputCodes input_codes() const override {
    return {std::is_same_v<Code, int8_t> ? cuda::ActCode::Int8 : cuda::ActCode::E4M3, w_.K_pad};
  }
  /// Rows are padded to 16 on the device: every op but the last must have N a
  /// multiple of 16 (then the padded rows of the fused op are the last op's).
  std::unique_ptr<CudaLinear> concat(const std::vector<const CudaLinearBase*>& ops,
                                     std::string& why) const override {
    std::vector<const cuda::DeviceBuffer<Code>*> codes;
    std::vector<const cuda::DeviceBuffer<float>*> scales;
    cuda::W8Weight<Code> w;
    w.K = w_.K;
    w.K_pad = w_.K_pad;
    for (size_t i = 0; i < ops.size(); ++i) {
      const auto& o = static_cast<const W8CudaLinear*>(ops[i])->w_;
      if (o.K_pad != w_.K_pad || (i + 1 < ops.size() && o.N != o.N_pad)) {
        why = "an output count that is not a multiple of 16";
        return nullptr;
      }
      codes.push_back(&o.codes);
      scales.push_back(&o.scale);
      w.N += o.N;
      w.N_pad += o.N_pad;
    }
    // `scale` holds every row's scale either way; the parts' per-tensor
    // scales may differ, so the whole is per-channel.
    w.per_channel = true;
    w.codes = concat_buffers(codes);
    w.scale = concat_buffers(scales);
    return std::make_unique<W8CudaLinear>(std::move(w), concat_bias(ops), format_);
  }

 private:
  cuda::W8Weight<Code> w_;
};

class W4CudaLinear final : public CudaLinearBase {
 public:
  W4CudaLinear(cuda::W4Weight w, cuda::DeviceBuffer<float> bias, std::string format)
      : CudaLinearBase(w.N, w.K, std::move(bias), std::move(format)), w_(std::move(w)) {}
  /// The weights of the prefill path: BF16((codebook[q] − zero) · scale).
  Tensor dequantized_weight() const override {
    cuda::DeviceBuffer<uint16_t> tmp(size_t(N_ * K_));
    cuda::w4_dequantize_bf16(w_, tmp.data(), K_, nullptr);
    KQ_CUDA_CHECK(cudaStreamSynchronize(nullptr));
    return bf16_matrix_to_f32(tmp, N_, K_);
  }

 protected:
  void matmul(cuda::GpuContext& ctx, const uint16_t* x, int64_t ldx, int64_t M, uint16_t* y,
              int64_t ldy) const override {
    cuda::w4a16_linear(ctx, w_, x, ldx, M, y, ldy);
  }
  size_t matrix_bytes() const override { return w_.bytes(); }
  bool matmul_swiglu(cuda::GpuContext& ctx, const uint16_t* gate, const uint16_t* up, uint16_t* y) const override {
    return cuda::w4a16_gemv_swiglu(w_, gate, up, y, ctx.stream());
  }
  bool matmul_rms_norm(cuda::GpuContext& ctx, const cuda::W4RmsNormInput& in, uint16_t* y) const override {
    return cuda::w4a16_gemv_rms_norm(w_, in, y, ctx.stream());
  }

 public:
  std::unique_ptr<CudaLinear> concat(const std::vector<const CudaLinearBase*>& ops,
                                     std::string& why) const override {
    std::vector<const cuda::DeviceBuffer<uint8_t>*> codes;
    std::vector<const cuda::DeviceBuffer<uint16_t>*> scales, zeros;
    std::vector<cuda::DeviceBuffer<uint16_t>> trimmed;  // scales / zeros without their spare element
    trimmed.reserve(2 * ops.size());
    cuda::W4Weight w;
    w.format = w_.format;
    w.K = w_.K;
    w.block = w_.block;
    w.K_pad = w_.K_pad;
    w.blocks_pad = w_.blocks_pad;
    // AWQ input scales: one x feeds the fused op, so every part must scale it alike.
    const std::vector<float> x_scale = w_.x_scale.download();
    for (const auto* op : ops) {
      const cuda::W4Weight& o = static_cast<const W4CudaLinear*>(op)->w_;
      if (o.x_scale.size() != w_.x_scale.size() || (!o.x_scale.empty() && o.x_scale.download() != x_scale)) {
        why = "AWQ input scales that differ (AWQ searched these linears one by one)";
        return nullptr;
      }
      if (o.format != w_.format || o.block != w_.block || o.K_pad != w_.K_pad || o.zeros.empty() != w_.zeros.empty()) {
        why = "4-bit codebooks, block sizes or zero points that differ";
        return nullptr;
      }
      codes.push_back(&o.codes);
      const size_t n = size_t(o.N * o.blocks_pad);
      for (const auto* src : {&o.scales, &o.zeros}) {
        if (src->empty()) continue;
        cuda::DeviceBuffer<uint16_t> t(n);
        KQ_CUDA_CHECK(cudaMemcpy(t.data(), src->data(), n * sizeof(uint16_t), cudaMemcpyDeviceToDevice));
        trimmed.push_back(std::move(t));
        (src == &o.scales ? scales : zeros).push_back(&trimmed.back());
      }
      w.N += o.N;
    }
    w.codes = concat_buffers(codes);
    w.scales = concat_buffers(scales, 1);  // the spare element the GEMV's word loads may touch
    if (!zeros.empty()) w.zeros = concat_buffers(zeros, 1);
    if (!x_scale.empty()) w.x_scale.upload(x_scale);
    return std::make_unique<W4CudaLinear>(std::move(w), concat_bias(ops), format_);
  }

 private:
  cuda::W4Weight w_;
};

}  // namespace

std::vector<std::unique_ptr<CudaLinearPart>> fuse_cuda_linears(std::span<const CudaLinear* const> ops,
                                                               std::string* why) {
  std::string reason;
  auto fail = [&](std::string r) {
    if (why) *why = std::move(r);
    return std::vector<std::unique_ptr<CudaLinearPart>>{};
  };
  if (ops.size() < 2) return fail("fewer than two linears");
  std::vector<const CudaLinearBase*> base;
  for (const CudaLinear* op : ops) {
    const auto* b = dynamic_cast<const CudaLinearBase*>(op);
    if (!b) return fail("a linear that is not a plain device op (already fused?)");
    const CudaLinearBase& first = base.empty() ? *b : *base.front();
    if (typeid(*b) != typeid(first) || b->format() != first.format() || b->in_features() != first.in_features())
      return fail("formats or input features that differ");
    if (b->bias_buffer().empty() != first.bias_buffer().empty()) return fail("a bias on some linears only");
    base.push_back(b);
  }
  for (size_t i = 0; i + 1 < base.size(); ++i)
    if (base[i]->out_features() % 16 != 0) return fail("an output count that is not a multiple of 16");
  std::shared_ptr<const CudaLinear> whole = base.front()->concat(base, reason);
  if (!whole) return fail(reason);
  const size_t total = whole->weight_bytes();
  const int64_t N = whole->out_features();
  std::vector<std::unique_ptr<CudaLinearPart>> parts;
  int64_t col0 = 0;
  size_t given = 0;
  for (size_t i = 0; i < base.size(); ++i) {
    const int64_t n = base[i]->out_features();
    const size_t bytes = i + 1 < base.size() ? size_t(double(total) * double(n) / double(N)) : total - given;
    parts.push_back(std::make_unique<CudaLinearPart>(whole, col0, n, bytes));
    col0 += n;
    given += bytes;
  }
  return parts;
}

std::unique_ptr<CudaLinear> make_cuda_linear_bf16(cuda::DeviceBuffer<uint16_t> w, int64_t N, int64_t K,
                                                  cuda::DeviceBuffer<float> bias, std::string format) {
  return std::make_unique<Bf16CudaLinear>(std::move(w), N, K, std::move(bias), std::move(format));
}

std::unique_ptr<CudaLinear> make_cuda_linear_int8(cuda::Int8Weight w, cuda::DeviceBuffer<float> bias,
                                                  std::string format) {
  return std::make_unique<W8CudaLinear<int8_t>>(std::move(w), std::move(bias), std::move(format));
}

std::unique_ptr<CudaLinear> make_cuda_linear_fp8(cuda::Fp8Weight w, cuda::DeviceBuffer<float> bias,
                                                 std::string format) {
  return std::make_unique<W8CudaLinear<uint8_t>>(std::move(w), std::move(bias), std::move(format));
}

std::unique_ptr<CudaLinear> make_cuda_linear_w4(cuda::W4Weight w, cuda::DeviceBuffer<float> bias,
                                                std::string format) {
  return std::make_unique<W4CudaLinear>(std::move(w), std::move(bias), std::move(format));
}

}  // namespace kq::gpu
