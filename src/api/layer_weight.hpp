#pragma once
// A linear layer's weight matrix as quantize_model and plan_adaptive_precision
// read it: its op's dequantized_weight(), checked against the op's shape (a
// caller's own Linear put into a LinearSlot may return anything).
#include <string>

#include "kq/linear.hpp"
#include "kq/tensor.hpp"

namespace kq {

/// op.dequantized_weight() as F32 [op.out_features(), op.in_features()] (an
/// FP32 op's own weight, shared rather than copied: only read it): a
/// BF16, F16 or F64 one converted to F32, an F32 one not 4-byte aligned
/// copied. A 16-bit op's (make_linear_w16; load_to_quantize holds every layer
/// so) is a new F32 tensor: drop it once the layer is done, then
/// return_freed_memory(). Throws InvalidArgument naming `layer` when it is undefined, of
/// another dtype (an integer or FP8 one) or of another shape than the op's.
Tensor layer_weight_f32(const Linear& op, const std::string& layer);

/// Hands the heap memory freed so far back to the system (glibc's
/// malloc_trim; nothing elsewhere). Called after each layer whose F32 weight
/// was a temporary copy: glibc serves blocks under its dynamic mmap threshold
/// (up to 32 MiB) from its heaps and keeps them when freed, and the quantized
/// layers allocated in between stop them from being reused, so the layers'
/// FP32 copies would pile up in the resident memory. Throws nothing.
void return_freed_memory() noexcept;

}  // namespace kq
