#include "kq/error.hpp"
#include "kq/model.hpp"

namespace kq {

namespace {
void check_sizes(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity) {
  if (num_layers < 1 || num_kv_heads < 1 || head_dim < 1 || capacity < 1)
    raise<InvalidArgument>(
        "KVCache: sizes must be positive (layers {}, kv heads {}, head_dim {}, capacity {})", num_layers,
        num_kv_heads, head_dim, capacity);
}
}  // namespace

KVCache::KVCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity)
    : num_layers_(num_layers), num_kv_heads_(num_kv_heads), head_dim_(head_dim), capacity_(capacity) {
  check_sizes(num_layers, num_kv_heads, head_dim, capacity);
  data_.resize(size_t(2 * num_layers * layer_stride()));
}

KVCache::KVCache(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity, Device device,
                 std::shared_ptr<void> device_storage)
    : num_layers_(num_layers),
      num_kv_heads_(num_kv_heads),
      head_dim_(head_dim),
      capacity_(capacity),
      device_(device),
      device_data_(std::move(device_storage)) {
  check_sizes(num_layers, num_kv_heads, head_dim, capacity);
  if (device == Device::CPU || !device_data_)
    raise<InvalidArgument>("KVCache: a device cache needs a non-CPU device and device memory");
}

void KVCache::advance(int64_t n) {
  if (n < 0 || n > capacity_ - size_)
    raise<InvalidArgument>("KVCache: cannot add {} tokens to a cache holding {} of {}", n, size_, capacity_);
  size_ += n;
}

}  // namespace kq
