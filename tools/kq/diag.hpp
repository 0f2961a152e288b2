#pragma once
// Diagnostics on stderr that never throw. fmt::print(stderr, ...) throws
// std::system_error when the write fails (stderr on a full disk, closed, or a
// broken pipe); inside an error handler that second exception ended kq with
// std::terminate (SIGABRT, exit 134). A message that cannot be written is
// lost, the exit status is not.
#include <fmt/format.h>

#include <cstdio>
#include <string>
#include <utility>

namespace kq::cli {

/// Formats (fmt syntax) and writes to stderr, then flushes; write errors and
/// formatting errors are ignored.
template <typename... Args>
void print_diag(fmt::format_string<Args...> format, Args&&... args) noexcept {
  try {
    const std::string s = fmt::format(format, std::forward<Args>(args)...);
    (void)std::fwrite(s.data(), 1, s.size(), stderr);
    (void)std::fflush(stderr);
  } catch (...) {  // only formatting or allocation can throw here: nothing to report it to
  }
}

}  // namespace kq::cli
