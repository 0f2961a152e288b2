#pragma once
// Owning device memory (cudaMalloc / cudaFree) for the CUDA backend.
#include <cuda_runtime_api.h>

#include <cstddef>
#include <utility>
#include <vector>

#include "kernels/cuda/cuda_check.hpp"

namespace kq::cuda {

/// n elements of T in device global memory, freed on destruction. Move-only.
/// Contents are uninitialized after construction. Throws kq::Error when the
/// allocation or a copy fails.
template <class T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  explicit DeviceBuffer(size_t n) { allocate(n); }
  DeviceBuffer(const DeviceBuffer&) = delete;
  DeviceBuffer& operator=(const DeviceBuffer&) = delete;
  DeviceBuffer(DeviceBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    if (this != &o) {
      release();
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~DeviceBuffer() { release(); }

  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  bool empty() const { return n_ == 0; }

  /// Grows to at least n elements (contents discarded when it grows).
  void reserve_discard(size_t n) {
    if (n <= n_) return;
    release();
    allocate(n);
  }
  /// Copies n elements from host memory (synchronous).
  void upload(const T* host, size_t n) {
    reserve_discard(n);
    if (n) KQ_CUDA_CHECK(cudaMemcpy(p_, host, n * sizeof(T), cudaMemcpyHostToDevice));
  }
  void upload(const std::vector<T>& host) { upload(host.data(), host.size()); }
  /// Copies the first n elements (all when n == npos) to host memory (synchronous).
  std::vector<T> download(size_t n = size_t(-1)) const {
    if (n > n_) n = n_;
    std::vector<T> h(n);
    if (n) KQ_CUDA_CHECK(cudaMemcpy(h.data(), p_, n * sizeof(T), cudaMemcpyDeviceToHost));
    return h;
  }
  /// Sets every byte to `byte` (e.g. 0xFF poisons float/bf16 buffers with NaN).
  void fill_bytes(int byte, cudaStream_t stream = nullptr) {
    if (n_) KQ_CUDA_CHECK(cudaMemsetAsync(p_, byte, bytes(), stream));
  }

 private:
  void allocate(size_t n) {
    if (n == 0) return;
    void* p = nullptr;
    KQ_CUDA_CHECK(cudaMalloc(&p, n * sizeof(T)));
    p_ = static_cast<T*>(p);
    n_ = n;
  }
  void release() noexcept {
    if (p_) cudaFree(p_);
    p_ = nullptr;
    n_ = 0;
  }
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace kq::cuda
