#include <algorithm>
#include <utility>

#include "kq/error.hpp"
#include "kq/model.hpp"

namespace kq {

namespace {
void check_sizes(int64_t num_layers, int64_t num_kv_heads, int64_t head_dim, int64_t capacity) {
  if (num_layers < 1 || num_kv_heads < 1 || head_dim < 1 || capacity < 1)
    raise<InvalidArgument>(
        "KVCache: sizes must be positive (layers {}, kv heads {}, head_dim {}, capacity {})", num_layers,
        num_kv_heads, head_dim, capacity);
  // Keys and values: 2 · layers · kv heads · capacity · head_dim elements, which must not overflow.
  int64_t n = 2;
  for (const int64_t f : {num_layers, num_kv_heads, capacity, head_dim})
    if (__builtin_mul_overflow(n, f, &n) || n > int64_t(1) << 56)
      raise<InvalidArgument>(
          "KVCache: 2 x {} layers x {} kv heads x {} positions x head_dim {} elements is too many", num_layers,
          num_kv_heads, capacity, head_dim);
}
}  // namespace

KVCache::KVCache(KVCache&& o) noexcept
    : num_layers_(std::exchange(o.num_layers_, 0)),
      num_kv_heads_(std::exchange(o.num_kv_heads_, 0)),
      head_dim_(std::exchange(o.head_dim_, 0)),
      capacity_(std::exchange(o.capacity_, 0)),
      size_(std::exchange(o.size_, 0)),
      device_(std::exchange(o.device_, Device::CPU)),
      data_(std::move(o.data_)),
      device_data_(std::move(o.device_data_)) {
  o.data_.clear();
}

KVCache& KVCache::operator=(KVCache&& o) noexcept {
  if (this != &o) {
    KVCache tmp(std::move(o));
    std::swap(num_layers_, tmp.num_layers_);
    std::swap(num_kv_heads_, tmp.num_kv_heads_);
    std::swap(head_dim_, tmp.head_dim_);
    std::swap(capacity_, tmp.capacity_);
    std::swap(size_, tmp.size_);
    std::swap(device_, tmp.device_);
    data_.swap(tmp.data_);
    device_data_.swap(tmp.device_data_);
  }
  return *this;
}

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
  if (device != Device::CPU && device != Device::CUDA)  // bytes() and the backends branch on it
    raise<InvalidArgument>("KVCache: device {} is not a Device (cpu or cuda)", int(device));
  if (device == Device::CPU || !device_data_)
    raise<InvalidArgument>("KVCache: a device cache needs a non-CPU device and device memory");
}

void KVCache::advance(int64_t n) {
  if (n < 0 || n > capacity_ - size_)
    raise<InvalidArgument>("KVCache: cannot add {} tokens to a cache holding {} of {}", n, size_, capacity_);
  size_ += n;
}

void KVCache::reserve(int64_t capacity) {
  if (device_ != Device::CPU)
    raise<Unsupported>("KVCache::reserve: a {} cache grows by Model::reserve_cache (its device copies it)",
                       device_name(device_));
  if (capacity <= capacity_) return;
  if (num_layers_ == 0)  // KVCache() or moved-from: no sizes to grow
    raise<InvalidArgument>(
        "KVCache::reserve: the cache is empty (default-constructed or moved-from: no layers, capacity 0); make one "
        "with Model::make_cache");
  check_sizes(num_layers_, num_kv_heads_, head_dim_, capacity);
  // Keys and values of every layer are [num_kv_heads, capacity, head_dim]: 2 · layers · kv heads blocks of
  // capacity · head_dim floats, of which each block's first size() rows are filled.
  HostStorage grown(size_t(2 * num_layers_ * num_kv_heads_ * capacity * head_dim_));
  for (int64_t b = 0; b < 2 * num_layers_ * num_kv_heads_; ++b)
    std::copy_n(data_.data() + b * capacity_ * head_dim_, size_ * head_dim_, grown.data() + b * capacity * head_dim_);
  data_.swap(grown);
  capacity_ = capacity;
}

}  // namespace kq
