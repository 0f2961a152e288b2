#pragma once
// The per-token activation codes of the W8A8 linears (w8a8.hpp), named where
// kernels that quantize their own output (model_ops.hpp) and the linears that
// read those codes (gpu_context.hpp, QuantizedInput) both need them.
#include <cstdint>

namespace kq::cuda {

/// How a W8A8 linear quantizes its input per token: not at all (BF16 paths),
/// FP8 E4M3 (scale = absmax / 448) or symmetric INT8 (scale = absmax / 127).
enum class ActCode : uint8_t { None, E4M3, Int8 };

}  // namespace kq::cuda
