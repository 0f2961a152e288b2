#pragma once
// The concrete CudaLinear ops, one per device weight layout, built from
// weights already on the device (by to_cuda from a CPU op, or by
// random_cuda_linear from random codes). Internal to src/gpu.
#include <cstdint>
#include <memory>
#include <string>

#include "gpu/cuda_linear.hpp"
#include "kernels/cuda/device_info.hpp"
#include "kernels/cuda/device_buffer.hpp"
#include "kernels/cuda/w4a16.hpp"
#include "kernels/cuda/w8a8.hpp"
#include "kq/quantize.hpp"

namespace kq::gpu {

/// The device weight layout to_cuda (and random_cuda_linear) uses for a format.
enum class DeviceLayout { BF16, Int8W8A8, Fp8W8A8, W4 };

/// Layout of a quantized `spec` on `dev` (see to_cuda's documentation):
/// INT8 W8A8 → Int8W8A8; FP8 E4M3 W8A8 on cc >= 8.9 → Fp8W8A8; NF4/FP4/FP4_BNB/INT4 →
/// W4; every other 8-bit variant (weight-only, E5M2, no FP8 hardware) → BF16.
DeviceLayout device_layout(const QuantSpec& spec, const cuda::DeviceQuery& dev);

/// BF16 weight W [N, K] row-major on the device, cuBLASLt BF16 GEMM.
/// bias: F32 [N] on the device, or empty for none. format: the tag format() returns.
/// Throws InvalidArgument when the buffer sizes do not match N, K.
std::unique_ptr<CudaLinear> make_cuda_linear_bf16(cuda::DeviceBuffer<uint16_t> w, int64_t N, int64_t K,
                                                  cuda::DeviceBuffer<float> bias, std::string format);

/// INT8 W8A8 (cuda::int8_w8a8_linear). bias, format as above.
std::unique_ptr<CudaLinear> make_cuda_linear_int8(cuda::Int8Weight w, cuda::DeviceBuffer<float> bias,
                                                  std::string format);

/// FP8 E4M3 W8A8 (cuda::fp8_w8a8_linear, path Auto). bias, format as above.
std::unique_ptr<CudaLinear> make_cuda_linear_fp8(cuda::Fp8Weight w, cuda::DeviceBuffer<float> bias,
                                                 std::string format);

/// W4A16: NF4, FP4, FP4_BNB, INT4 (cuda::w4a16_linear). bias, format as above.
std::unique_ptr<CudaLinear> make_cuda_linear_w4(cuda::W4Weight w, cuda::DeviceBuffer<float> bias,
                                                std::string format);

}  // namespace kq::gpu
