// to_cuda: converts the CPU Linear ops (FP32, 16-bit and every quantized format) to
// the CUDA backend's device layouts (see cuda_linear.hpp for the mapping).
#include <algorithm>
#include <vector>

#include "formats/fp8.hpp"
#include "gpu/cuda_linear.hpp"
#include "gpu/cuda_linear_ops.hpp"
#include "kernels/awq_linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kernels/quantized_linear.hpp"
#include "kq/dtype.hpp"
#include "kq/error.hpp"

namespace kq::gpu {
namespace {

cuda::DeviceBuffer<float> upload_bias(const Linear& op) {
  cuda::DeviceBuffer<float> b;
  const Tensor t = op.bias();
  if (!t.defined()) return b;
  if (t.dtype() != DType::F32 || t.numel() != op.out_features())
    raise<InvalidArgument>("to_cuda ({}): bias must be F32 [{}]", op.format(), op.out_features());
  b.upload(t.data<float>(), size_t(t.numel()));
  return b;
}

/// Rounds an F32 [N, K] host matrix to BF16 (nearest even) and uploads it.
cuda::DeviceBuffer<uint16_t> upload_bf16(const float* w, int64_t N, int64_t K) {
  std::vector<uint16_t> h(size_t(N * K));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < N * K; ++i) h[size_t(i)] = f32_to_bf16(w[i]);
  cuda::DeviceBuffer<uint16_t> d;
  d.upload(h);
  return d;
}

/// Uploads a 16-bit host matrix [N, K] as BF16: BF16 bits as they are, F16
/// values rounded to BF16 (nearest even), the rounding an F32 copy of them got.
cuda::DeviceBuffer<uint16_t> upload_w16_as_bf16(const Tensor& w) {
  const int64_t n = w.numel();
  const uint16_t* src = w.data<uint16_t>();
  cuda::DeviceBuffer<uint16_t> d;
  if (w.dtype() == DType::BF16) {
    d.upload(src, size_t(n));
    return d;
  }
  std::vector<uint16_t> h(static_cast<size_t>(n));
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) h[size_t(i)] = f32_to_bf16(f16_to_f32(src[i]));
  d.upload(h);
  return d;
}

std::unique_ptr<CudaLinear> dequantized_to_bf16(const QuantizedLinear& q) {
  // PackedWeight::dequantize: scale · value(code) in F32, the values the CPU op uses.
  const Tensor w = q.packed().dequantize();
  return make_cuda_linear_bf16(upload_bf16(w.data<float>(), q.out_features(), q.in_features()), q.out_features(),
                               q.in_features(), upload_bias(q), q.format());
}

/// The decoded F32 block scales of every row, [N, blocks_per_row] (double
/// quantization expanded; per-tensor formats give the one scale per row).
std::vector<float> all_scales(const PackedWeight& p) {
  std::vector<float> s(size_t(p.N * p.blocks_per_row));
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < p.N; ++n) p.row_scales(n, s.data() + n * p.blocks_per_row);
  return s;
}

std::unique_ptr<CudaLinear> convert_w8a8(const QuantizedLinear& q) {
  const PackedWeight& p = q.packed();
  const bool per_channel = p.spec.weight_scales == ScaleGranularity::PerChannel;
  const std::vector<float> scales = all_scales(p);  // [N] (per-tensor: the same value N times)
  if (p.spec.format == PrecisionFormat::INT8) {
    cuda::Int8Weight w =
        cuda::upload_int8_weight(p.codes.data<int8_t>(), scales.data(), per_channel, p.N, p.K);
    return make_cuda_linear_int8(std::move(w), upload_bias(q), q.format());
  }
  cuda::Fp8Weight w = cuda::upload_fp8_weight(p.codes.data<uint8_t>(), scales.data(), per_channel, p.N, p.K);
  return make_cuda_linear_fp8(std::move(w), upload_bias(q), q.format());
}

/// The 4-bit layout of q; `awq` (or null): the AWQ op q is the inner op of,
/// whose 1 / s become the weight's input scales and whose tag the op takes.
std::unique_ptr<CudaLinear> convert_w4(const QuantizedLinear& q, const AwqLinear* awq = nullptr) {
  const PackedWeight& p = q.packed();
  cuda::W4Format f = cuda::W4Format::NF4;
  switch (p.spec.format) {
    case PrecisionFormat::NF4: f = cuda::W4Format::NF4; break;
    case PrecisionFormat::FP4: f = cuda::W4Format::FP4; break;
    case PrecisionFormat::FP4_BNB: f = cuda::W4Format::FP4Bnb; break;
    case PrecisionFormat::INT4: f = p.spec.symmetric ? cuda::W4Format::INT4 : cuda::W4Format::INT4Asym; break;
    default: raise<Unsupported>("to_cuda: format '{}' is not a 4-bit format", q.format());
  }
  std::vector<float> scales = all_scales(p);
  // bitsandbytes' FP4: the device codebook holds its values times 12 (exact in BF16), so the scales are absmax / 12.
  if (f == cuda::W4Format::FP4Bnb)
    for (float& s : scales) s /= 12.0f;
  const uint8_t* zeros = f == cuda::W4Format::INT4Asym ? p.zeros.data<uint8_t>() : nullptr;
  cuda::W4Weight w = cuda::upload_w4_weight_packed(f, p.N, p.K, p.spec.block_size, p.codes.data<uint8_t>(),
                                                   scales.data(), zeros);
  if (!awq) return make_cuda_linear_w4(std::move(w), upload_bias(q), q.format());
  const Tensor& s = awq->scales();
  if (s.dtype() != DType::F32 || s.numel() != p.K)
    raise<InvalidArgument>("to_cuda ({}): AWQ scales must be F32 [{}]", awq->format(), p.K);
  std::vector<float> inv(size_t(p.K));
  for (int64_t k = 0; k < p.K; ++k) inv[size_t(k)] = 1.0f / s.data<float>()[k];
  cuda::set_w4_input_scale(w, inv.data());  // throws for 1 / s not finite and > 0
  return make_cuda_linear_w4(std::move(w), upload_bias(q), awq->format());
}

}  // namespace

DeviceLayout device_layout(const QuantSpec& spec, const cuda::DeviceQuery& dev) {
  switch (spec.format) {
    case PrecisionFormat::INT8: return spec.quantize_activations ? DeviceLayout::Int8W8A8 : DeviceLayout::BF16;
    case PrecisionFormat::FP8_E4M3: {
      const bool has_fp8 = dev.cc_major > 8 || (dev.cc_major == 8 && dev.cc_minor >= 9);
      return spec.quantize_activations && has_fp8 ? DeviceLayout::Fp8W8A8 : DeviceLayout::BF16;
    }
    case PrecisionFormat::NF4:
    case PrecisionFormat::FP4:
    case PrecisionFormat::FP4_BNB:
    case PrecisionFormat::INT4: return DeviceLayout::W4;
    default: return DeviceLayout::BF16;
  }
}

std::unique_ptr<CudaLinear> to_cuda(const Linear& op, cuda::GpuContext& ctx) {
  if (const float* w = linear_f32_weight_data(op)) {
    const int64_t N = op.out_features(), K = op.in_features();
    return make_cuda_linear_bf16(upload_bf16(w, N, K), N, K, upload_bias(op), op.format());
  }
  if (const Tensor* w = linear_w16_weight(op))  // a quantized model's unquantized BF16/F16 layer
    return make_cuda_linear_bf16(upload_w16_as_bf16(*w), op.out_features(), op.in_features(), upload_bias(op),
                                 op.format());
  if (const auto* awq = dynamic_cast<const AwqLinear*>(&op)) {
    // AWQ: the INT4 weight of W · diag(s), with 1 / s applied to x by the W4A16 kernels.
    const auto* inner = dynamic_cast<const QuantizedLinear*>(&awq->inner());
    if (!inner || device_layout(inner->spec(), ctx.device()) != DeviceLayout::W4)
      raise<Unsupported>("to_cuda: {} (AWQ) over a '{}' op has no GPU path (expected a 4-bit op)", op.format(),
                         awq->inner().format());
    return convert_w4(*inner, awq);
  }
  const QuantSpec* spec = quantized_linear_spec(op);
  const auto* q = dynamic_cast<const QuantizedLinear*>(&op);
  if (!spec || !q)
    raise<Unsupported>("to_cuda: Linear of format '{}' has no GPU path (expected an FP32, 16-bit or quantized CPU op)",
                       op.format());
  switch (device_layout(*spec, ctx.device())) {
    case DeviceLayout::BF16: return dequantized_to_bf16(*q);
    case DeviceLayout::Int8W8A8:
    case DeviceLayout::Fp8W8A8: return convert_w8a8(*q);
    case DeviceLayout::W4: return convert_w4(*q);
  }
  raise<Unsupported>("to_cuda: quantized format '{}' has no GPU path", op.format());
}

}  // namespace kq::gpu
