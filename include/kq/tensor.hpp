#pragma once
// Dense, row-major tensors over shared storage (heap or memory-mapped file).
#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>
#include <string>
#include <vector>

#include "kq/dtype.hpp"

namespace kq {

/// A contiguous block of bytes that tensors view. Read-only storages (memory
/// mapped model files) return nullptr from mutable_data().
class Storage {
 public:
  virtual ~Storage() = default;
  virtual const std::byte* data() const = 0;
  virtual std::byte* mutable_data() = 0;
  virtual size_t size() const = 0;
};

/// Heap storage, 64-byte aligned (one cache line / one AVX-512 vector).
class HeapStorage final : public Storage {
 public:
  /// Allocates `bytes` (rounded up to a multiple of 64; 0 allocates one line).
  /// Throws std::bad_alloc when the memory cannot be allocated, including a
  /// `bytes` whose rounding would overflow size_t (more than SIZE_MAX - 63).
  explicit HeapStorage(size_t bytes);
  ~HeapStorage() override;
  HeapStorage(const HeapStorage&) = delete;
  HeapStorage& operator=(const HeapStorage&) = delete;
  const std::byte* data() const override { return ptr_; }
  std::byte* mutable_data() override { return ptr_; }
  size_t size() const override { return size_; }

 private:
  std::byte* ptr_ = nullptr;
  size_t size_ = 0;
};

/// A whole file mapped read-only into memory (POSIX mmap). The mapping lives as
/// long as any tensor views it, so a model's weights are never copied twice.
class MappedFile final : public Storage {
 public:
  /// Maps `path`. Throws FormatError naming the file if it cannot be opened or mapped.
  static std::shared_ptr<MappedFile> open(const std::string& path);
  ~MappedFile() override;
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const std::byte* data() const override { return ptr_; }
  std::byte* mutable_data() override { return nullptr; }
  size_t size() const override { return size_; }
  const std::string& path() const { return path_; }

 private:
  MappedFile() = default;
  std::byte* ptr_ = nullptr;
  size_t size_ = 0;
  std::string path_;
};

/// Tensor shape, outermost dimension first.
using Shape = std::vector<int64_t>;

/// Number of elements of a shape (1 for a scalar shape {}). Throws
/// InvalidArgument on a negative dimension or when the product overflows int64.
int64_t shape_numel(const Shape& s);

/// "[2, 3, 4]"
std::string shape_str(const Shape& s);

/// A dense row-major tensor: dtype + shape + (storage, byte offset). Copies are
/// shallow (they share storage); use clone() for a deep copy.
class Tensor {
 public:
  /// An undefined tensor: defined() is false and raw() nullptr. Its dtype is F32
  /// and its shape the scalar shape {}, so numel() is 1 and nbytes() 4 although it
  /// holds no bytes: check defined() before using the sizes of a tensor that may
  /// be undefined (an optional bias, say).
  Tensor() = default;
  Tensor(const Tensor&) = default;
  Tensor(Tensor&&) noexcept = default;
  Tensor& operator=(const Tensor&) = default;
  /// Takes `other`'s storage, dtype and shape, leaving `other` undefined;
  /// `x = std::move(x)` leaves x as it was. Never throws.
  Tensor& operator=(Tensor&& other) noexcept;

  /// Uninitialised heap tensor. Throws InvalidArgument for a dtype that is not a
  /// DType value (a cast such as DType(99)), on negative dims, or when the
  /// element count or the byte size (numel x dtype_size) overflows int64.
  static Tensor empty(DType dtype, Shape shape);
  /// Zero-filled heap tensor. Throws as empty().
  static Tensor zeros(DType dtype, Shape shape);
  /// A view of `storage` bytes [offset, offset + nbytes). Throws InvalidArgument
  /// as empty() for the shape, and if the range does not fit inside the storage.
  static Tensor view(std::shared_ptr<Storage> storage, size_t offset, DType dtype, Shape shape);

  bool defined() const { return storage_ != nullptr; }
  DType dtype() const { return dtype_; }
  const Shape& shape() const { return shape_; }
  int ndim() const { return int(shape_.size()); }
  /// Size of dimension i; negative i counts from the end.
  int64_t dim(int i) const;
  int64_t numel() const { return shape_numel(shape_); }
  size_t nbytes() const { return size_t(numel()) * dtype_size(dtype_); }
  bool is_mapped() const;  ///< true when the bytes live in a read-only file mapping

  const void* raw() const { return storage_ ? storage_->data() + offset_ : nullptr; }
  /// Writable pointer. Throws Error for read-only (mapped) storage, and
  /// InvalidArgument for an undefined tensor (as clone() does; raw() gives
  /// nullptr there, which only reading code can check).
  void* raw_mut();
  template <class T> const T* data() const { return static_cast<const T*>(raw()); }
  template <class T> T* mutable_data() { return static_cast<T*>(raw_mut()); }

  /// Same bytes, new shape with the same element count. Throws InvalidArgument (an undefined
  /// tensor, a negative dimension, an overflowing size, another element count).
  Tensor reshaped(Shape shape) const;
  /// Rows [begin, end) of dimension 0, sharing storage.
  Tensor slice_rows(int64_t begin, int64_t end) const;
  /// Deep copy into heap storage. Throws InvalidArgument for an undefined tensor.
  Tensor clone() const;
  /// Heap copy converted to F32 (F32, F16, BF16, F64 sources). Throws InvalidArgument otherwise
  /// (other dtypes, an undefined tensor).
  Tensor to_f32() const;
  /// 2-D transpose into a new heap tensor: [a, b] -> [b, a]. Any dtype. Throws
  /// InvalidArgument for an undefined tensor or one that is not 2-D.
  Tensor transposed() const;

 private:
  std::shared_ptr<Storage> storage_;
  size_t offset_ = 0;
  DType dtype_ = DType::F32;
  Shape shape_;
};

}  // namespace kq
