#include "tokenizer/utf8.hpp"

#include <cstdint>

namespace kq::tok {

void append_utf8(std::string& out, char32_t cp) {
  if (cp < 0x80) {
    out.push_back(char(cp));
  } else if (cp < 0x800) {
    out.push_back(char(0xC0 | (cp >> 6)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(char(0xE0 | (cp >> 12)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(char(0xF0 | (cp >> 18)));
    out.push_back(char(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(char(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(char(0x80 | (cp & 0x3F)));
  }
}

namespace {

/// Sequence length announced by lead byte b (0: not a lead byte) and the
/// allowed range of the second byte (RFC 3629 table, excluding overlongs and
/// surrogates).
struct Lead {
  size_t len;
  uint8_t lo, hi;
};

Lead lead_info(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b < 0xC2) return {0, 0, 0};  // continuation byte or overlong C0/C1
  if (b < 0xE0) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};
  if (b < 0xF0) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b < 0xF4) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};
  return {0, 0, 0};
}

/// true when bytes s[i+1 .. i+n) are valid continuation bytes for lead l.
bool continuations_ok(std::string_view s, size_t i, size_t n, const Lead& l) {
  for (size_t k = 1; k < n; ++k) {
    const auto c = uint8_t(s[i + k]);
    if (k == 1 ? (c < l.lo || c > l.hi) : (c < 0x80 || c > 0xBF)) return false;
  }
  return true;
}

}  // namespace

size_t decode_utf8(std::string_view s, size_t i, char32_t& cp) {
  if (i >= s.size()) return 0;
  const auto b0 = uint8_t(s[i]);
  const Lead l = lead_info(b0);
  if (l.len == 0 || i + l.len > s.size()) return 0;
  if (l.len == 1) {
    cp = b0;
    return 1;
  }
  if (!continuations_ok(s, i, l.len, l)) return 0;
  static constexpr uint8_t kLeadMask[5] = {0, 0, 0x1F, 0x0F, 0x07};
  char32_t v = b0 & kLeadMask[l.len];
  for (size_t k = 1; k < l.len; ++k) v = (v << 6) | (uint8_t(s[i + k]) & 0x3F);
  cp = v;
  return l.len;
}

size_t incomplete_utf8_tail(std::string_view s) {
  // An incomplete sequence has its lead byte within the last 3 bytes.
  const size_t n = s.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const size_t i = n - back;
    const auto b = uint8_t(s[i]);
    if (b >= 0x80 && b < 0xC0) continue;  // continuation byte: keep looking for the lead
    const Lead l = lead_info(b);
    if (l.len <= back) return 0;  // ASCII, invalid lead, or a complete sequence
    return continuations_ok(s, i, back, l) ? back : 0;
  }
  return 0;
}

std::string replace_invalid_utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (size_t i = 0; i < s.size();) {
    char32_t cp;
    if (const size_t len = decode_utf8(s, i, cp)) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    // Maximal subpart: the lead byte plus the continuation bytes it allows, up to the first that breaks it.
    const Lead l = lead_info(uint8_t(s[i]));
    size_t k = 1;
    while (l.len > 1 && k < l.len && i + k < s.size() && continuations_ok(s, i, k + 1, l)) ++k;
    append_utf8(out, 0xFFFD);
    i += k;
  }
  return out;
}

}  // namespace kq::tok
