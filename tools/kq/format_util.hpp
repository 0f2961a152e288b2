#pragma once
// Small formatting helpers shared by the CLI subcommands.
#include <cstddef>
#include <string>

#include <fmt/format.h>

namespace kq::cli {

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
