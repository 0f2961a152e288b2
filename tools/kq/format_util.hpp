#pragma once
// Small formatting helpers shared by the CLI subcommands.
#include <cstddef>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "kq/error.hpp"

namespace kq::cli {

/// Checks, before any work starts, that an output file option (e.g. --json)
/// names a file in an existing folder and not a folder itself, so a long run
/// does not end in "cannot create a temporary file". Throws InvalidArgument.
inline void check_output_file(const char* option, const std::string& path) {
  if (path.empty()) return;
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path p(path);
  if (fs::is_directory(p, ec)) raise<InvalidArgument>("{}: '{}' is a folder, not a file", option, path);
  const fs::path dir = p.has_parent_path() ? p.parent_path() : fs::path(".");
  if (!fs::is_directory(dir, ec))
    raise<InvalidArgument>("{}: folder '{}' does not exist (for '{}')", option, dir.string(), path);
}

/// "1.23 MiB", "456.0 KiB", "12 B".
inline std::string human_bytes(size_t b) {
  const double v = double(b);
  if (v >= 1024.0 * 1024 * 1024) return fmt::format("{:.2f} GiB", v / (1024.0 * 1024 * 1024));
  if (v >= 1024.0 * 1024) return fmt::format("{:.2f} MiB", v / (1024.0 * 1024));
  if (v >= 1024.0) return fmt::format("{:.1f} KiB", v / 1024.0);
  return fmt::format("{} B", b);
}

/// Percentage reduction 1 − after/before, in %.
inline double reduction_pct(size_t before, size_t after) {
  return before ? (1.0 - double(after) / double(before)) * 100.0 : 0.0;
}

}  // namespace kq::cli
