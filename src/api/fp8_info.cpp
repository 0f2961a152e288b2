// FP8 / GPU availability (include/kq/fp8.hpp). Always compiled: a CPU-only
// build answers "not available" with the reason; a CUDA build asks the driver
// through the CUDA backend (src/kernels/cuda/device_info.hpp).
#include "kq/fp8.hpp"

#include <fmt/format.h>

#include "kq/error.hpp"

#ifdef KQ_WITH_CUDA
#include "kernels/cuda/device_info.hpp"
#endif

namespace kq {
namespace {

FP8Info query() {
  FP8Info info;
#ifndef KQ_WITH_CUDA
  info.reason =
      "this build is CPU-only (the CUDA backend was not compiled; reconfigure with "
      "-DKQ_CUDA=ON on a machine with the CUDA toolkit)";
#else
  info.cuda_built = true;
  const cuda::DeviceQuery q = cuda::query_device(0);
  info.cuda_runtime_version = q.runtime_version;
  info.cuda_driver_version = q.driver_version;
  info.cublaslt_version = q.cublaslt_version;
  if (!q.found) {
    info.reason = q.error.empty() ? std::string("no CUDA device found") : q.error;
    return info;
  }
  info.device_found = true;
  info.device_name = q.name;
  info.cc_major = q.cc_major;
  info.cc_minor = q.cc_minor;
  info.multiprocessors = q.multiprocessors;
  info.memory_bytes = q.memory_bytes;
  info.l2_bytes = q.l2_bytes;
  info.fp8_tensor_cores = q.cc_major * 10 + q.cc_minor >= 89;
  if (!info.fp8_tensor_cores) {
    info.reason = fmt::format(
        "{} has compute capability {}.{}; FP8 tensor cores need 8.9 or newer (Ada, Hopper, Blackwell)",
        q.name, q.cc_major, q.cc_minor);
    return info;
  }
  info.available = true;
#endif
  return info;
}

std::string version_string(long v, bool cublas) {
  if (v <= 0) return "unknown";
  if (cublas) return fmt::format("{}.{}.{}", v / 10000, (v / 100) % 100, v % 100);
  return fmt::format("{}.{}", v / 1000, (v % 1000) / 10);
}

}  // namespace

const FP8Info& get_fp8_info() {
  static const FP8Info info = query();
  return info;
}

bool is_fp8_available() { return get_fp8_info().available; }

std::string fp8_info_report() {
  const FP8Info& i = get_fp8_info();
  std::string s;
  if (!i.cuda_built) {
    s += "GPU:      not built (CPU-only build)\n";
  } else if (!i.device_found) {
    s += fmt::format("GPU:      none ({})\n", i.reason);
  } else {
    s += fmt::format("GPU:      {} (cc {}.{}, {} SMs, {:.1f} GiB, L2 {:.1f} MiB)\n", i.device_name,
                     i.cc_major, i.cc_minor, i.multiprocessors,
                     double(i.memory_bytes) / double(1ull << 30), double(i.l2_bytes) / double(1 << 20));
  }
  if (i.cuda_built) {
    s += fmt::format("CUDA:     runtime {}, driver {}, cuBLASLt {}\n",
                     version_string(i.cuda_runtime_version, false),
                     version_string(i.cuda_driver_version, false),
                     version_string(long(i.cublaslt_version), true));
  }
  if (i.available)
    s += "FP8:      E4M3 tensor cores available (cc >= 8.9)\n";
  else
    s += fmt::format(
        "FP8:      GPU FP8 tensor cores not available: {}; the fp8 quantization modes still run on the CPU "
        "(fp8 / fp8-e5m2: W8A8, the activations quantized to FP8 per token as well, products summed in FP32; "
        "fp8-wo: FP8 weights only)\n",
        i.reason);
  return s;
}

void require_cuda(std::string_view op, bool needs_fp8) {
  const FP8Info& i = get_fp8_info();
  if (!i.cuda_built) raise<Unsupported>("{}: needs the CUDA backend, but {}", op, i.reason);
  if (!i.device_found) raise<Unsupported>("{}: needs a CUDA device: {}", op, i.reason);
  if (needs_fp8 && !i.available) raise<Unsupported>("{}: needs FP8 tensor cores: {}", op, i.reason);
}

}  // namespace kq
