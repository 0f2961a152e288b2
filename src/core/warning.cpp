// The process-wide warning handler (include/kq/warning.hpp).
#include "kq/warning.hpp"

#include <cstdio>
#include <mutex>

namespace kq {
namespace {

std::mutex& handler_mutex() {
  static std::mutex m;
  return m;
}

WarningHandler& current_handler() {
  static WarningHandler h;
  return h;
}

}  // namespace

WarningHandler set_warning_handler(WarningHandler handler) {
  const std::lock_guard lock(handler_mutex());
  WarningHandler previous = std::move(current_handler());
  current_handler() = std::move(handler);
  return previous;
}

void warn(const std::string& message) {
  const std::lock_guard lock(handler_mutex());
  try {
    if (const WarningHandler& h = current_handler()) {
      h(message);
      return;
    }
  } catch (...) {
    return;  // a warning never becomes an error
  }
  std::fprintf(stderr, "kq: warning: %s\n", message.c_str());
  std::fflush(stderr);
}

}  // namespace kq
