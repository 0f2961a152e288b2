#include "io/atomic_file.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>
#ifdef __linux__
#include <linux/magic.h>
#include <sys/vfs.h>
#endif

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <vector>

#include "io/file_kind.hpp"
#include "kq/error.hpp"

namespace kq::io {

void AtomicFileSink::write(const void* data, size_t n) {
  const auto* p = static_cast<const char*>(data);
  while (n > 0) {
    const ssize_t w = ::write(fd_, p, n);
    if (w < 0) {
      if (errno == EINTR) continue;
      raise<Error>("{}: write failed: {}", path_, std::strerror(errno));
    }
    p += w;
    n -= size_t(w);
    written_ += size_t(w);
  }
}

void fsync_path(const std::filesystem::path& path) {
  const bool is_dir = std::filesystem::is_directory(path);
  const int fd = ::open(path.c_str(), (is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
  if (fd < 0) raise<Error>("{}: cannot open for fsync: {}", path.string(), std::strerror(errno));
  const int rc = ::fsync(fd);
  const int err = errno;
  ::close(fd);
  if (rc != 0 && !(is_dir && (err == EINVAL || err == EBADF)))
    raise<Error>("{}: fsync failed: {}", path.string(), std::strerror(err));
}

namespace {

/// The name of the kernel pseudo file system (proc, sysfs, ...) `dir` is on,
/// which holds kernel interfaces, not stored files: none can be created there
/// (the call fails with ENOENT, EACCES or EPERM, whoever asks). Empty for any
/// other file system, or when it cannot be told.
std::string_view pseudo_file_system(const std::filesystem::path& dir) {
#ifdef __linux__
  struct statfs st {};
  if (::statfs((dir.empty() ? std::filesystem::path(".") : dir).c_str(), &st) != 0) return {};
  switch (static_cast<unsigned long>(st.f_type)) {
    case PROC_SUPER_MAGIC: return "proc";
    case SYSFS_MAGIC: return "sysfs";
    case CGROUP_SUPER_MAGIC: return "cgroup";
    case CGROUP2_SUPER_MAGIC: return "cgroup2";
    case DEBUGFS_MAGIC: return "debugfs";
    case TRACEFS_MAGIC: return "tracefs";
    case SECURITYFS_MAGIC: return "securityfs";
    case DEVPTS_SUPER_MAGIC: return "devpts";
    case BPF_FS_MAGIC: return "bpf";
    case PSTOREFS_MAGIC: return "pstore";
    case EFIVARFS_MAGIC: return "efivarfs";
    default: return {};
  }
#else
  (void)dir;
  return {};
#endif
}

}  // namespace

std::string temporary_sibling_failure(const std::filesystem::path& dir, int err) {
  if (const auto why = why_not_folder(dir)) return *why;
  if (err == ENAMETOOLONG)
    return "the name is too long: the output is first written under a temporary name up to 12 bytes "
           "longer in the same folder, and that name must fit the file system's limit (usually 255 "
           "bytes); choose a shorter name";
  const std::string shown = dir.empty() ? std::string(".") : dir.string();
  if (const std::string_view fs_name = pseudo_file_system(dir); !fs_name.empty())
    return fmt::format("folder '{}' is on the kernel's {} file system, which holds no ordinary files: none can be "
                       "created there (creating one failed: {}); choose a folder on a disk",
                       shown, fs_name, std::strerror(err));
  if (err == EROFS) return fmt::format("folder '{}' is on a read-only file system ({})", shown, std::strerror(err));
  if (err == EACCES || err == EPERM)
    return fmt::format("no permission to create files in folder '{}' ({})", shown, std::strerror(err));
  if (err == ENOENT)  // the folder is there (why_not_folder): ENOENT names no missing folder
    return fmt::format("cannot create a file in folder '{}', which exists (creating one failed: {})", shown,
                       std::strerror(err));
  return fmt::format("cannot create a file in folder '{}' ({})", shown, std::strerror(err));
}

std::filesystem::path atomic_write_target(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path target = symlink_target(path);
  if (fs::exists(fs::symlink_status(target, ec)))
    if (const auto why = why_not_regular_file(target))
      raise<InvalidArgument>("'{}' {}; output files are only written as regular files (nothing was written)",
                             path.string(), *why);
  return target;
}

mode_t current_umask() {
  // umask(2) can only be read by setting it; /proc/self/status (Linux >= 4.7)
  // has it without the moment in which a file created by another thread
  // would get the wrong mode.
  if (FILE* f = std::fopen("/proc/self/status", "re")) {
    char line[256];
    unsigned mask = 0;
    bool found = false;
    while (!found && std::fgets(line, sizeof line, f)) found = std::sscanf(line, "Umask: %o", &mask) == 1;
    std::fclose(f);
    if (found) return mode_t(mask & 0777);
  }
  const mode_t mask = ::umask(0);
  ::umask(mask);
  return mask;
}

mode_t output_file_mode(const std::filesystem::path& target) {
  struct stat st {};
  if (::stat(target.c_str(), &st) == 0 && S_ISREG(st.st_mode)) return st.st_mode & 0777;
  return 0666 & ~current_umask();
}

std::string temporary_file_template(const std::filesystem::path& target) {
  const std::filesystem::path dir =
      target.has_parent_path() ? target.parent_path() : std::filesystem::path(".");
  std::string base_name(".");  // (built with append: GCC 12 warns falsely on "." + string)
  base_name.append(target.filename().string()).append(".tmp-XXXXXX");
  return (dir / base_name).string();
}

void write_file_atomic(const std::filesystem::path& requested,
                       const std::function<void(AtomicFileSink&)>& fill) {
  if (requested.filename().empty()) raise<InvalidArgument>("'{}': not a file path", requested.string());
  const std::filesystem::path path = atomic_write_target(requested);
  const std::filesystem::path dir = path.has_parent_path() ? path.parent_path() : std::filesystem::path(".");
  const std::string tmpl = temporary_file_template(path);
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  int fd = ::mkostemp(name.data(), O_CLOEXEC);
  if (fd < 0) {
    const int err = errno;
    raise<Error>("{}: cannot write it: {}", path.string(), temporary_sibling_failure(dir, err));
  }
  const std::string tmp(name.data());
  try {
    // mkostemp made it 0600: give it the mode of the file it replaces, or a new file's.
    if (::fchmod(fd, output_file_mode(path)) != 0)
      raise<Error>("{}: fchmod failed: {}", path.string(), std::strerror(errno));
    AtomicFileSink sink(fd, path.string());
    fill(sink);
    if (::fsync(fd) != 0) raise<Error>("{}: fsync failed: {}", path.string(), std::strerror(errno));
    const int rc = ::close(fd);
    fd = -1;
    if (rc != 0) raise<Error>("{}: close failed: {}", path.string(), std::strerror(errno));
    if (::rename(tmp.c_str(), path.c_str()) != 0)
      raise<Error>("{}: cannot rename the temporary file into place: {}", path.string(), std::strerror(errno));
  } catch (...) {
    if (fd >= 0) ::close(fd);
    ::unlink(tmp.c_str());
    throw;
  }
  fsync_path(dir);  // make the rename itself durable
}

void write_file_atomic(const std::filesystem::path& path, std::string_view contents) {
  write_file_atomic(path, [&](AtomicFileSink& s) { s.write(contents); });
}

}  // namespace kq::io
