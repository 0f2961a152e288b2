#include "core/mapped_file_identity.hpp"

#include <fmt/format.h>
#include <sys/stat.h>

#include <mutex>
#include <vector>

namespace kq::core {
namespace {

struct Identity {
  std::string path;
  uint64_t dev = 0, ino = 0;
  int64_t size = 0, mtime_ns = 0;
};

struct Records {
  std::mutex mutex;
  std::vector<Identity> files;
};

Records& records() {
  static Records* r = new Records;  // never destroyed: usable from any static destructor
  return *r;
}

}  // namespace

void record_mapped_file(const std::string& path, uint64_t dev, uint64_t ino, int64_t size,
                        int64_t mtime_ns) noexcept {
  try {
    Records& r = records();
    const std::lock_guard lock(r.mutex);
    for (const Identity& f : r.files)
      if (f.path == path) return;
    r.files.push_back({path, dev, ino, size, mtime_ns});
  } catch (...) {  // std::bad_alloc: the file is not checked
  }
}

std::vector<ChangedFile> changed_mapped_files() {
  std::vector<ChangedFile> changed;
  Records& r = records();
  const std::lock_guard lock(r.mutex);
  for (const Identity& f : r.files) {
    struct stat st {};
    if (::stat(f.path.c_str(), &st) != 0)
      changed.push_back({f.path, "it was removed"});
    else if (uint64_t(st.st_dev) != f.dev || uint64_t(st.st_ino) != f.ino)
      changed.push_back({f.path, "it was replaced by another file"});
    else if (int64_t(st.st_size) != f.size)
      changed.push_back({f.path, fmt::format("its size changed from {} to {} bytes", f.size, int64_t(st.st_size))});
    else if (int64_t(st.st_mtim.tv_sec) * 1'000'000'000 + st.st_mtim.tv_nsec != f.mtime_ns)
      changed.push_back({f.path, "it was modified (its modification time changed)"});
  }
  return changed;
}

}  // namespace kq::core
