// Input paths that are not regular files, named for what they are.
#include "io/file_kind.hpp"

#include <system_error>

#include "kq/error.hpp"

namespace kq::io {

std::optional<std::string> why_not_regular_file(const std::filesystem::path& file) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status st = fs::status(file, ec);  // follows symbolic links; never throws with ec
  switch (st.type()) {
    case fs::file_type::regular:
      return std::nullopt;
    case fs::file_type::not_found: {
      std::error_code link_ec;
      if (fs::is_symlink(fs::symlink_status(file, link_ec)))  // dangling: the link itself is there
        return "is a symbolic link to '" + fs::read_symlink(file, link_ec).string() + "', which does not exist";
      return std::string("not found");
    }
    case fs::file_type::directory:
      return std::string("is a directory, not a file");
    case fs::file_type::character:
      return std::string("is a character device, not a regular file");
    case fs::file_type::block:
      return std::string("is a block device, not a regular file");
    case fs::file_type::fifo:
      return std::string("is a FIFO (named pipe), not a regular file");
    case fs::file_type::socket:
      return std::string("is a socket, not a regular file");
    default:
      break;
  }
  if (ec == std::errc::too_many_symbolic_link_levels) {  // ELOOP: the file itself, or a folder on the way
    std::error_code link_ec;
    const fs::file_status link = fs::symlink_status(file, link_ec);
    if (!link_ec && fs::is_symlink(link)) return "is a symbolic link loop (" + ec.message() + ")";
    return "cannot be accessed: a folder on the way is a symbolic link loop (" + ec.message() + ")";
  }
  if (ec) return "cannot be accessed (" + ec.message() + ")";
  return std::string("is not a regular file");
}

std::optional<std::string> why_not_folder(const std::filesystem::path& dir) {
  namespace fs = std::filesystem;
  const fs::path d = dir.empty() ? fs::path(".") : dir;
  // The nearest part of `d` that exists (stat fails with ENOENT or ENOTDIR,
  // both "not found" to std::filesystem, below a file) says what is wrong.
  for (fs::path p = d;; p = p.parent_path()) {
    std::error_code ec;
    const fs::file_status st = fs::status(p, ec);
    if (st.type() == fs::file_type::directory) {
      if (p == d) return std::nullopt;
      break;  // a folder on the way exists: the folders below it do not
    }
    if (st.type() != fs::file_type::not_found) {
      if (ec) return fmt::format("'{}' cannot be accessed ({})", p.string(), ec.message());
      return fmt::format("'{}' is not a directory", p.string());
    }
    if (!p.has_relative_path() || p.parent_path().empty() || p.parent_path() == p) break;
  }
  return fmt::format("folder '{}' does not exist", d.string());
}

std::filesystem::path symlink_target(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path target = path;
  for (int hops = 0; fs::is_symlink(fs::symlink_status(target, ec)); ++hops) {
    if (hops == 40) raise<Error>("{}: too many levels of symbolic links", path.string());
    const fs::path next = fs::read_symlink(target, ec);
    if (ec) raise<Error>("{}: cannot read the symbolic link: {}", path.string(), ec.message());
    target = next.is_absolute() ? next : target.parent_path() / next;
  }
  return target;
}

}  // namespace kq::io
