#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <new>

#include "core/mapped_file_identity.hpp"
#include "core/mapped_regions.hpp"
#include "kq/error.hpp"
#include "kq/tensor.hpp"

namespace kq {

HeapStorage::HeapStorage(size_t bytes) : size_(bytes) {
  // Rounded up to whole 64-byte lines; a size within 63 of SIZE_MAX would wrap to
  // a tiny allocation while size() still claimed `bytes` (Tensor::view trusts size()).
  if (bytes > SIZE_MAX - 63) throw std::bad_alloc();
  const size_t rounded = (bytes + 63) / 64 * 64;
  ptr_ = static_cast<std::byte*>(std::aligned_alloc(64, rounded == 0 ? 64 : rounded));
  if (!ptr_) throw std::bad_alloc();
}

HeapStorage::~HeapStorage() { std::free(ptr_); }

std::shared_ptr<MappedFile> MappedFile::open(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) raise<FormatError>("{}: cannot open: {}", path, std::strerror(errno));
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    ::close(fd);
    raise<FormatError>("{}: not a regular file", path);
  }
  // (before the map: a change between this fstat and the mapping is seen too)
  core::record_mapped_file(path, uint64_t(st.st_dev), uint64_t(st.st_ino), int64_t(st.st_size),
                           int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec);
  std::shared_ptr<MappedFile> m(new MappedFile());
  m->path_ = path;
  m->size_ = size_t(st.st_size);
  if (m->size_ > 0) {
    void* p = ::mmap(nullptr, m->size_, PROT_READ, MAP_PRIVATE, fd, 0);
    if (p == MAP_FAILED) {
      const int err = errno;
      ::close(fd);
      raise<FormatError>("{}: mmap failed: {}", path, std::strerror(err));
    }
    m->ptr_ = static_cast<std::byte*>(p);
    core::register_mapping(p, m->size_, m->path_);  // for a truncated file's SIGBUS message
  }
  ::close(fd);
  return m;
}

MappedFile::~MappedFile() {
  if (!ptr_) return;
  core::unregister_mapping(ptr_);
  ::munmap(ptr_, size_);
}

}  // namespace kq
