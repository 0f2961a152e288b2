#include "kq/tensor.hpp"

#include <cstring>
#include <utility>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include "kq/error.hpp"

namespace kq {

int64_t shape_numel(const Shape& s) {
  for (int64_t d : s)
    if (d < 0) raise<InvalidArgument>("negative dimension in shape {}", shape_str(s));
  int64_t n = 1;
  for (int64_t d : s)
    if (__builtin_mul_overflow(n, d, &n))
      raise<InvalidArgument>("shape {} overflows int64", shape_str(s));
  return n;
}

std::string shape_str(const Shape& s) { return fmt::format("[{}]", fmt::join(s, ", ")); }

namespace {
// The one check of a new tensor's shape: no negative dimension, and an element
// count and a byte size (numel x element size) that fit int64, so that nbytes()
// cannot wrap (a wrapped 0 let empty() allocate nothing for 2^62 elements).
void check_shape(DType dtype, const Shape& s) {
  if (uint8_t(dtype) > uint8_t(DType::F64))  // dtype_size() would say 1 byte for it
    raise<InvalidArgument>("Tensor::empty / zeros / view: dtype {} is not a DType", int(dtype));
  const int64_t n = shape_numel(s);  // throws on a negative dimension or an int64 overflow
  int64_t bytes = 0;
  if (__builtin_mul_overflow(n, int64_t(dtype_size(dtype)), &bytes))
    raise<InvalidArgument>("shape {} of {} is {} elements of {} bytes, which overflows int64", shape_str(s),
                           dtype_name(dtype), n, dtype_size(dtype));
}
}  // namespace

Tensor& Tensor::operator=(Tensor&& other) noexcept {
  if (this == &other) return *this;  // the members' own self-moves would empty the shape
  storage_ = std::move(other.storage_);
  offset_ = std::exchange(other.offset_, 0);
  dtype_ = std::exchange(other.dtype_, DType::F32);
  shape_ = std::move(other.shape_);
  other.shape_.clear();
  return *this;
}

Tensor Tensor::empty(DType dtype, Shape shape) {
  check_shape(dtype, shape);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  t.storage_ = std::make_shared<HeapStorage>(t.nbytes());
  return t;
}

Tensor Tensor::zeros(DType dtype, Shape shape) {
  Tensor t = empty(dtype, std::move(shape));
  std::memset(t.raw_mut(), 0, t.nbytes());
  return t;
}

Tensor Tensor::view(std::shared_ptr<Storage> storage, size_t offset, DType dtype, Shape shape) {
  check_shape(dtype, shape);
  Tensor t;
  t.dtype_ = dtype;
  t.shape_ = std::move(shape);
  const size_t n = t.nbytes();
  if (!storage || offset > storage->size() || n > storage->size() - offset)
    raise<InvalidArgument>("tensor view [{}, {}) is outside its storage of {} bytes", offset,
                           offset + n, storage ? storage->size() : 0);
  t.storage_ = std::move(storage);
  t.offset_ = offset;
  return t;
}

int64_t Tensor::dim(int i) const {
  const int n = ndim();
  const int j = i < 0 ? i + n : i;  // the message names the index given, not the shifted one
  if (j < 0 || j >= n) raise<InvalidArgument>("dimension {} out of range for shape {}", i, shape_str(shape_));
  return shape_[size_t(j)];
}

bool Tensor::is_mapped() const { return dynamic_cast<const MappedFile*>(storage_.get()) != nullptr; }

void* Tensor::raw_mut() {
  // As clone() / to_f32(): a caller writing through nullptr would crash far from the cause.
  if (!storage_) raise<InvalidArgument>("raw_mut() of an undefined (default-constructed) tensor");
  std::byte* p = storage_->mutable_data();
  if (!p) raise("tensor is read-only (memory-mapped); clone() it before writing");
  return p + offset_;
}

Tensor Tensor::reshaped(Shape shape) const {
  if (!defined()) raise<InvalidArgument>("reshaped() of an undefined (default-constructed) tensor");
  check_shape(dtype_, shape);
  if (shape_numel(shape) != numel())
    raise<InvalidArgument>("cannot reshape {} to {}", shape_str(shape_), shape_str(shape));
  Tensor t = *this;
  t.shape_ = std::move(shape);
  return t;
}

Tensor Tensor::slice_rows(int64_t begin, int64_t end) const {
  if (ndim() < 1 || begin < 0 || end < begin || end > shape_[0])
    raise<InvalidArgument>("row slice [{}, {}) out of range for shape {}", begin, end, shape_str(shape_));
  Tensor t = *this;
  const size_t row_bytes = shape_[0] == 0 ? 0 : nbytes() / size_t(shape_[0]);
  t.offset_ += size_t(begin) * row_bytes;
  t.shape_[0] = end - begin;
  return t;
}

Tensor Tensor::clone() const {
  if (!defined()) raise<InvalidArgument>("clone() of an undefined (default-constructed) tensor");
  Tensor t = empty(dtype_, shape_);
  if (nbytes()) std::memcpy(t.raw_mut(), raw(), nbytes());
  return t;
}

Tensor Tensor::to_f32() const {
  if (!defined()) raise<InvalidArgument>("to_f32() of an undefined (default-constructed) tensor");
  Tensor t = empty(DType::F32, shape_);
  convert_to_f32(dtype_, raw(), t.mutable_data<float>(), size_t(numel()));
  return t;
}

Tensor Tensor::transposed() const {
  if (!defined()) raise<InvalidArgument>("transposed() of an undefined (default-constructed) tensor");
  if (ndim() != 2) raise<InvalidArgument>("transposed() needs a 2-D tensor, got {}", shape_str(shape_));
  const int64_t a = shape_[0], b = shape_[1];
  const size_t es = dtype_size(dtype_);
  Tensor t = empty(dtype_, {b, a});
  const auto* src = static_cast<const std::byte*>(raw());
  auto* dst = static_cast<std::byte*>(t.raw_mut());
  constexpr int64_t kTile = 32;
  for (int64_t i0 = 0; i0 < a; i0 += kTile)
    for (int64_t j0 = 0; j0 < b; j0 += kTile)
      for (int64_t i = i0; i < std::min(a, i0 + kTile); ++i)
        for (int64_t j = j0; j < std::min(b, j0 + kTile); ++j)
          std::memcpy(dst + size_t(j * a + i) * es, src + size_t(i * b + j) * es, es);
  return t;
}

}  // namespace kq
