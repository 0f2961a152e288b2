// UTF-8 validation of user text (RFC 3629 §4, Table 3-7 of the Unicode Standard).
#include "io/utf8_text.hpp"

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fstream>
#include <vector>

#include "io/file_kind.hpp"
#include "kq/error.hpp"

namespace kq::io {
namespace {

/// Length (1..4) of the well-formed sequence at s[i], or 0 if ill-formed.
size_t sequence_length(std::string_view s, size_t i) {
  const auto b = [&](size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char c = b(i);
  if (c < 0x80) return 1;
  size_t len = 0;
  unsigned char lo = 0x80, hi = 0xBF;  // allowed range of the second byte
  if (c >= 0xC2 && c <= 0xDF) {
    len = 2;
  } else if (c >= 0xE0 && c <= 0xEF) {
    len = 3;
    if (c == 0xE0) lo = 0xA0;  // no overlong 3-byte forms
    if (c == 0xED) hi = 0x9F;  // no surrogates
  } else if (c >= 0xF0 && c <= 0xF4) {
    len = 4;
    if (c == 0xF0) lo = 0x90;  // no overlong 4-byte forms
    if (c == 0xF4) hi = 0x8F;  // nothing above U+10FFFF
  } else {
    return 0;  // 0x80..0xC1 (continuation or overlong 2-byte lead), 0xF5..0xFF
  }
  if (i + len > s.size()) return 0;
  if (b(i + 1) < lo || b(i + 1) > hi) return 0;
  for (size_t k = 2; k < len; ++k)
    if (b(i + k) < 0x80 || b(i + k) > 0xBF) return 0;
  return len;
}

}  // namespace

std::optional<size_t> find_invalid_utf8(std::string_view text) {
  size_t i = 0;
  while (i < text.size()) {
    // Fast path over ASCII.
    if (static_cast<unsigned char>(text[i]) < 0x80) {
      ++i;
      continue;
    }
    const size_t n = sequence_length(text, i);
    if (n == 0) return i;
    i += n;
  }
  return std::nullopt;
}

std::string escape_for_terminal(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    const auto c = static_cast<unsigned char>(text[i]);
    if (c >= 0x20 && c < 0x7F) {
      out.push_back(char(c));
      ++i;
      continue;
    }
    const size_t n = c < 0x80 ? 0 : sequence_length(text, i);  // ASCII here is a control character
    if (n == 0) {  // a C0 control, DEL, or a byte of no well-formed sequence
      out += fmt::format("\\x{:02X}", c);
      ++i;
    } else if (n == 2 && c == 0xC2 && static_cast<unsigned char>(text[i + 1]) < 0xA0) {  // U+0080..U+009F
      out += fmt::format("\\u{:04X}", static_cast<unsigned char>(text[i + 1]));
      i += 2;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

void check_utf8(std::string_view text, const std::string& source) {
  const auto bad = find_invalid_utf8(text);
  if (!bad) return;
  // The column counts characters (code points), as an editor shows it: the
  // text before the bad byte is valid UTF-8, so every byte that is not a
  // continuation byte (10xxxxxx) starts one character.
  size_t line = 1, column = 1;
  for (size_t k = 0; k < *bad; ++k) {
    if (text[k] == '\n') {
      ++line, column = 1;
    } else if ((static_cast<unsigned char>(text[k]) & 0xC0) != 0x80) {
      ++column;
    }
  }
  raise<FormatError>(
      "{}: invalid UTF-8 at byte offset {} (line {}, column {}): byte 0x{:02X}; the text must be UTF-8 "
      "(convert it first, e.g. iconv -f latin1 -t utf-8)",
      source, *bad, line, column, static_cast<unsigned char>(text[*bad]));
}

std::string read_utf8_text_file(const std::filesystem::path& file, uint64_t max_bytes) {
  // Streamed to the end of the file: the size a file reports is not trusted
  // (/proc files report 0 bytes and hold text; a file may grow while read).
  if (const auto why = why_not_regular_file(file)) raise<FormatError>("{}: {}", file.string(), *why);
  std::ifstream in(file, std::ios::binary);
  if (!in) raise<FormatError>("{}: cannot open for reading: {}", file.string(), std::strerror(errno));
  std::string text;
  std::vector<char> chunk(size_t(1) << 16);
  while (in) {
    in.read(chunk.data(), std::streamsize(chunk.size()));
    const auto got = uint64_t(in.gcount());
    if (got > max_bytes - text.size())
      raise<FormatError>("{}: file is more than the {} bytes allowed", file.string(), max_bytes);
    text.append(chunk.data(), size_t(got));
  }
  if (in.bad()) raise<FormatError>("{}: read error", file.string());
  check_utf8(text, file.string());
  return text;
}

}  // namespace kq::io
