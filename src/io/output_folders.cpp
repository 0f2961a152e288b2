#include "io/output_folders.hpp"

#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <system_error>

#include "io/atomic_dir.hpp"
#include "io/atomic_file.hpp"
#include "kq/error.hpp"

namespace kq::io {
namespace fs = std::filesystem;

namespace {

/// The nearest of `dir` ("." when empty) and its ancestors that exists, as stat(2) sees it (links followed;
/// a file on the way makes the parts below it "not found", ENOTDIR), or a dangling symbolic link, which
/// exists but names nothing; "." for a relative path none of whose parts exist.
struct Nearest {
  fs::path path;
  fs::file_status status;
  std::error_code ec;     ///< of stat, for a part that exists but cannot be examined
  bool dangling = false;  ///< `path` is a symbolic link to nothing
};

Nearest nearest_existing(const fs::path& dir) {
  for (fs::path p = dir.empty() ? fs::path(".") : dir;; p = p.parent_path()) {
    Nearest n{p, {}, {}};
    n.status = fs::status(p, n.ec);
    if (n.status.type() != fs::file_type::not_found) return n;
    std::error_code link_ec;
    if (fs::is_symlink(fs::symlink_status(p, link_ec))) {
      n.dangling = true;
      return n;
    }
    if (p.parent_path().empty() || p.parent_path() == p) {  // "a" of a relative path, or the root
      if (p.has_root_directory()) return n;                 // (the root is always there)
      Nearest dot{".", {}, {}};
      dot.status = fs::status(dot.path, dot.ec);
      return dot;
    }
  }
}

/// fsync(2) of folder `dir`, ignoring failures (the new entries are then as durable as the file system makes them).
void fsync_quietly(const fs::path& dir) noexcept {
  try {
    fsync_path(dir);
  } catch (...) {
  }
}

}  // namespace

std::optional<std::string> why_not_creatable_folder(const fs::path& dir) {
  const Nearest n = nearest_existing(dir);
  if (n.dangling) {
    std::error_code ec;
    return fmt::format("'{}' is a symbolic link to '{}', which does not exist", n.path.string(),
                       fs::read_symlink(n.path, ec).string());
  }
  if (n.status.type() == fs::file_type::directory) return std::nullopt;
  if (n.ec) return fmt::format("'{}' cannot be accessed ({})", n.path.string(), n.ec.message());
  return fmt::format("'{}' is not a directory", n.path.string());
}

fs::path nearest_existing_folder(const fs::path& dir) {
  const Nearest n = nearest_existing(dir);
  return !n.dangling && n.status.type() == fs::file_type::directory ? n.path : fs::path();
}

std::vector<fs::path> make_folders(const fs::path& dir) {
  if (const auto why = why_not_creatable_folder(dir)) raise<InvalidArgument>("{}", *why);
  const fs::path top = nearest_existing_folder(dir);
  std::vector<fs::path> missing;  // deepest first
  for (fs::path p = dir; !p.empty() && p != top && p.parent_path() != p; p = p.parent_path()) missing.push_back(p);
  std::reverse(missing.begin(), missing.end());
  std::vector<fs::path> made;
  for (const fs::path& p : missing) {
    if (::mkdir(p.c_str(), 0777) == 0) {
      made.push_back(p);
      continue;
    }
    const int err = errno;
    std::error_code ec;
    if (err == EEXIST && fs::is_directory(p, ec)) continue;  // made meanwhile (by another process): not ours
    remove_made_folders(made);
    raise<Error>("cannot create folder '{}': {}", p.string(), std::strerror(err));
  }
  for (const fs::path& p : made) fsync_quietly(p.has_parent_path() ? p.parent_path() : fs::path("."));
  return made;
}

void remove_made_folders(const std::vector<fs::path>& made) noexcept {
  for (auto it = made.rbegin(); it != made.rend(); ++it) (void)::rmdir(it->c_str());
}

MadeFolders::MadeFolders(const fs::path& dir) : made_(make_folders(dir)) {
  try {
    remove_folders_on_signals(made_);
  } catch (...) {
    remove_made_folders(made_);
    throw;
  }
}

MadeFolders::~MadeFolders() {
  forget_folders_on_signals(made_);
  remove_made_folders(made_);
}

void MadeFolders::keep() {
  forget_folders_on_signals(made_);
  made_.clear();
}

}  // namespace kq::io
