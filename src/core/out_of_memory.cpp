// Messages of allocations that ran out of memory (core/out_of_memory.hpp).
#include "core/out_of_memory.hpp"

#include <fmt/format.h>

#include <iterator>

namespace kq {

std::string byte_size_text(size_t bytes) {
  static constexpr const char* kUnits[] = {"KiB", "MiB", "GiB", "TiB", "PiB", "EiB"};
  if (bytes < 1024) return fmt::format("{} B", bytes);
  double v = double(bytes) / 1024.0;
  size_t unit = 0;
  while (v >= 1024.0 && unit + 1 < std::size(kUnits)) v /= 1024.0, ++unit;
  return unit == 0 ? fmt::format("{:.1f} {}", v, kUnits[unit]) : fmt::format("{:.2f} {}", v, kUnits[unit]);
}

std::string out_of_memory_message(const std::string& what, size_t bytes) {
  return fmt::format("{} needs {}: out of memory", what, byte_size_text(bytes));
}

std::string out_of_memory_text(const std::bad_alloc& e, const std::string& note) {
  const auto* named = dynamic_cast<const OutOfMemory*>(&e);
  return (named ? std::string(named->what()) : std::string("out of memory")) + note;
}

}  // namespace kq
