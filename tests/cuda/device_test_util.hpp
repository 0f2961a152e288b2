#pragma once
// Device buffers for the GPU tests: uploaded from host vectors, or poisoned
// (every byte 0xFF, i.e. NaN for F32/BF16) so unwritten outputs are caught.
#include <cstddef>
#include <vector>

#include "kernels/cuda/device_buffer.hpp"

namespace kq::testing {

/// A device copy of h.
template <class T>
cuda::DeviceBuffer<T> up(const std::vector<T>& h) {
  cuda::DeviceBuffer<T> d;
  d.upload(h);
  return d;
}

/// n elements, every byte 0xFF.
template <class T>
cuda::DeviceBuffer<T> poisoned(size_t n) {
  cuda::DeviceBuffer<T> d(n);
  d.fill_bytes(0xFF);
  return d;
}

}  // namespace kq::testing
