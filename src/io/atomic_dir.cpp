#include "io/atomic_dir.hpp"

#include <fcntl.h>
#include <stdio.h>  // renameat2 (glibc >= 2.28, _GNU_SOURCE)
#include <unistd.h>

#include <sys/stat.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "io/atomic_file.hpp"
#include "kq/error.hpp"

namespace kq::io {
namespace fs = std::filesystem;

namespace {

bool is_nonempty_dir(const fs::path& p) {
  std::error_code ec;
  return fs::is_directory(p, ec) && !fs::is_empty(p, ec);
}

/// mkdtemp on "<base>.<tag>-XXXXXX". A failure names `base` only.
fs::path make_sibling_dir(const fs::path& base, const char* tag) {
  std::string tmpl = base.string() + "." + tag + "-XXXXXX";
  std::vector<char> name(tmpl.begin(), tmpl.end());
  name.push_back('\0');
  if (!::mkdtemp(name.data())) {
    const int err = errno;
    raise<Error>("{}: cannot write it: {}", base.string(),
                 temporary_sibling_failure(base.parent_path(), err));
  }
  // mkdtemp makes the folder 0700; give it the permissions mkdir would (0777 & ~umask).
  const mode_t mask = ::umask(0);
  ::umask(mask);
  ::chmod(name.data(), 0777 & ~mask);
  return fs::path(name.data());
}

/// fsync every regular file and folder under `root`, deepest first, then root.
void fsync_tree(const fs::path& root) {
  std::vector<fs::path> dirs;
  for (const auto& e : fs::recursive_directory_iterator(root)) {
    if (e.is_symlink()) continue;
    if (e.is_directory()) dirs.push_back(e.path());
    else if (e.is_regular_file()) fsync_path(e.path());
  }
  for (auto it = dirs.rbegin(); it != dirs.rend(); ++it) fsync_path(*it);
  fsync_path(root);
}

/// `message` with each occurrence of `from` (the staging folder) replaced by `to` (the target).
std::string renamed(std::string message, const std::string& from, const std::string& to) {
  for (size_t at = message.find(from); at != std::string::npos; at = message.find(from, at + to.size()))
    message.replace(at, from.size(), to);
  return message;
}

/// Runs `f`; a kq::Error from it is re-thrown, same type, naming `out` where it named `staging`.
void naming_target(const fs::path& staging, const fs::path& out, const std::function<void()>& f) {
  const std::string from = staging.string(), to = out.string();
  try {
    f();
  } catch (const InvalidArgument& e) {
    throw InvalidArgument(renamed(e.what(), from, to));
  } catch (const FormatError& e) {
    throw FormatError(renamed(e.what(), from, to));
  } catch (const Unsupported& e) {
    throw Unsupported(renamed(e.what(), from, to));
  } catch (const Error& e) {
    throw Error(renamed(e.what(), from, to));
  }
}

}  // namespace

AtomicDir::AtomicDir(fs::path out, bool overwrite) : overwrite_(overwrite) {
  out = out.lexically_normal();
  if (out.filename().empty()) out = out.parent_path();  // "dir/" -> "dir"
  if (out.empty() || out == "." || out == "..")
    raise<InvalidArgument>("'{}': not a usable output folder name", out.string());
  out_ = out;
  std::error_code ec;
  if (fs::exists(fs::symlink_status(out_, ec)) && !fs::is_directory(fs::symlink_status(out_, ec)))
    raise<InvalidArgument>("{}: exists and is not a folder", out_.string());
  if (!overwrite_ && is_nonempty_dir(out_))
    raise<InvalidArgument>("{}: folder exists and is not empty (use --overwrite to replace it)", out_.string());
  staging_ = make_sibling_dir(out_, "tmp");
}

AtomicDir::~AtomicDir() {
  if (committed_ || staging_.empty()) return;
  std::error_code ec;
  fs::remove_all(staging_, ec);
}

void AtomicDir::write(const std::function<void()>& write_files) const {
  naming_target(staging_, out_, write_files);
}

void AtomicDir::commit() {
  if (committed_) raise<Error>("{}: AtomicDir::commit() called twice", out_.string());
  naming_target(staging_, out_, [&] {
    try {
      fsync_tree(staging_);
    } catch (const fs::filesystem_error& e) {
      raise<Error>("{}: cannot list the new folder's files: {}", out_.string(), e.code().message());
    }
  });
  const fs::path parent = out_.has_parent_path() ? out_.parent_path() : fs::path(".");

  if (::rename(staging_.c_str(), out_.c_str()) == 0) {  // out absent or an empty folder
    committed_ = true;
    fsync_path(parent);
    return;
  }
  const int err = errno;
  if (err != ENOTEMPTY && err != EEXIST)
    raise<Error>("{}: cannot move the new folder into place: {}", out_.string(), std::strerror(err));
  if (!overwrite_)
    raise<InvalidArgument>("{}: folder exists and is not empty (use --overwrite to replace it)", out_.string());

  // Replace a non-empty `out`: atomic exchange when available.
  if (::renameat2(AT_FDCWD, staging_.c_str(), AT_FDCWD, out_.c_str(), RENAME_EXCHANGE) == 0) {
    // staging_ now names the old folder.
    committed_ = true;
    fsync_path(parent);
    std::error_code ec;
    fs::remove_all(staging_, ec);
    return;
  }
  const int xerr = errno;
  if (xerr != EINVAL && xerr != ENOSYS && xerr != ENOTSUP)
    raise<Error>("{}: cannot replace the old folder with the new one: {}", out_.string(),
                 std::strerror(xerr));

  // Fallback: out -> out.old-XXXXXX, staging -> out, delete old.
  const fs::path old = make_sibling_dir(out_, "old");
  if (::rename(out_.c_str(), old.c_str()) != 0) {  // replaces the empty placeholder `old`
    const int e2 = errno;
    std::error_code ec;
    fs::remove(old, ec);
    raise<Error>("{}: cannot move the old folder aside: {}", out_.string(), std::strerror(e2));
  }
  if (::rename(staging_.c_str(), out_.c_str()) != 0) {
    const int e3 = errno;
    ::rename(old.c_str(), out_.c_str());  // best effort: put the old folder back
    raise<Error>("{}: cannot move the new folder into place: {}", out_.string(), std::strerror(e3));
  }
  committed_ = true;
  fsync_path(parent);
  std::error_code ec;
  fs::remove_all(old, ec);
}

}  // namespace kq::io
