// A linear layer's weight matrix, checked (see the header).
#include "api/layer_weight.hpp"

#include <cstdint>

#ifdef __GLIBC__
#include <malloc.h>
#endif

#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"

namespace kq {

Tensor layer_weight_f32(const Linear& op, const std::string& layer) {
  if (const Tensor* f32 = linear_f32_weight(op)) return *f32;  // shared (dequantized_weight() copies), read only
  const int64_t N = op.out_features(), K = op.in_features();
  Tensor w = op.dequantized_weight();
  constexpr const char* kWant = "a Linear returns its weight dequantized as F32 [out_features, in_features]";
  if (!w.defined())
    raise<InvalidArgument>(
        "layer '{}': its op ({}) returned an undefined tensor from dequantized_weight(); {} = [{}, {}]", layer,
        op.format(), kWant, N, K);
  if (w.dtype() != DType::F32 && w.dtype() != DType::BF16 && w.dtype() != DType::F16 && w.dtype() != DType::F64)
    raise<InvalidArgument>(
        "layer '{}': its op ({}) returned a tensor of dtype {} from dequantized_weight(); {} = [{}, {}]", layer,
        op.format(), dtype_name(w.dtype()), kWant, N, K);
  if (w.shape() != Shape{N, K})
    raise<InvalidArgument>(
        "layer '{}': its op ({}) returned a tensor of shape {} from dequantized_weight(), but the op has {} out x "
        "{} in features; {} = [{}, {}]",
        layer, op.format(), shape_str(w.shape()), N, K, kWant, N, K);
  if (w.dtype() != DType::F32) return w.to_f32();
  if (reinterpret_cast<uintptr_t>(w.raw()) % alignof(float) != 0) return w.clone();
  return w;
}

void return_freed_memory() noexcept {
#ifdef __GLIBC__
  malloc_trim(0);
#endif
}

}  // namespace kq
