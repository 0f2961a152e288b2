#include "core/enum_name.hpp"

#include <map>
#include <mutex>
#include <string>

#include <fmt/format.h>

namespace kq {

std::string_view unknown_enum_name(int64_t value) {
  static std::mutex mutex;
  // Never destroyed: a name may be used by a static destructor. Map nodes do not move, so the views stay valid.
  static auto* names = new std::map<int64_t, std::string>;
  constexpr size_t kMaxNames = 4096;
  const std::lock_guard lock(mutex);
  auto it = names->find(value);
  if (it == names->end()) {
    if (names->size() >= kMaxNames) return "unknown";
    it = names->emplace(value, fmt::format("unknown({})", value)).first;
  }
  return it->second;
}

}  // namespace kq
