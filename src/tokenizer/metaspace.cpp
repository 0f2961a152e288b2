#include "tokenizer/metaspace.hpp"

#include <fmt/core.h>

namespace kq::tok {

void MetaspaceRule::apply(std::string_view section, bool at_text_start, std::string& out) const {
  if (section.empty()) return;
  const bool leading = section.front() == ' ' || section.starts_with(kMetaspace);
  const bool prepend_here = prepend == Prepend::kEverySection || (prepend == Prepend::kFirstSection && at_text_start);
  if (prepend_here && !(unless_leading_metaspace && leading)) out += kMetaspace;
  out.reserve(out.size() + section.size() + section.size() / 4);
  for (const char ch : section) {
    if (ch == ' ')
      out += kMetaspace;
    else
      out.push_back(ch);
  }
}

std::optional<uint8_t> byte_fallback_value(std::string_view token) {
  if (token.size() != 6 || !token.starts_with("<0x") || token.back() != '>') return std::nullopt;
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    return -1;
  };
  const int hi = hex(token[3]), lo = hex(token[4]);
  if (hi < 0 || lo < 0) return std::nullopt;
  return uint8_t(hi * 16 + lo);
}

std::string byte_fallback_token(uint8_t b) { return fmt::format("<0x{:02X}>", b); }

std::string metaspace_to_bytes(std::string_view token) {
  if (const auto b = byte_fallback_value(token)) return std::string(1, char(*b));
  std::string out;
  out.reserve(token.size());
  for (size_t i = 0; i < token.size();) {
    if (token.substr(i).starts_with(kMetaspace)) {
      out.push_back(' ');
      i += kMetaspace.size();
    } else {
      out.push_back(token[i++]);
    }
  }
  return out;
}

}  // namespace kq::tok
