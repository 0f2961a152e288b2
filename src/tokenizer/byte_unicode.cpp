#include "tokenizer/byte_unicode.hpp"

#include <array>

#include "tokenizer/utf8.hpp"

namespace kq::tok {
namespace {

bool printable(int b) { return (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF); }

struct Tables {
  std::array<char32_t, 256> to_cp{};
  std::array<int16_t, 256 + 68> to_byte{};  // indexed by code point < 324
  Tables() {
    to_byte.fill(-1);
    char32_t next = 256;
    for (int b = 0; b < 256; ++b) {
      to_cp[size_t(b)] = printable(b) ? char32_t(b) : next++;
      to_byte[to_cp[size_t(b)]] = int16_t(b);
    }
  }
};

const Tables& tables() {
  static const Tables t;  // immutable after construction (thread-safe static init)
  return t;
}

}  // namespace

char32_t byte_to_unicode(uint8_t b) { return tables().to_cp[b]; }

int unicode_to_byte(char32_t cp) {
  const auto& t = tables().to_byte;
  return cp < t.size() ? t[cp] : -1;
}

std::string bytes_to_symbols(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size() * 2);
  for (char c : bytes) append_utf8(out, byte_to_unicode(uint8_t(c)));
  return out;
}

std::string symbols_to_bytes(std::string_view symbols) {
  std::string out;
  out.reserve(symbols.size());
  for (size_t i = 0; i < symbols.size();) {
    char32_t cp = 0;
    const size_t n = decode_utf8(symbols, i, cp);
    if (n == 0) {  // malformed: keep the byte
      out.push_back(symbols[i++]);
      continue;
    }
    const int b = unicode_to_byte(cp);
    if (b >= 0) {
      out.push_back(char(b));
    } else {
      out.append(symbols.substr(i, n));
    }
    i += n;
  }
  return out;
}

}  // namespace kq::tok
