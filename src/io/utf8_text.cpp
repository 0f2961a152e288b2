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

/// The code point of the well-formed sequence of `n` bytes at s[i].
char32_t code_point(std::string_view s, size_t i, size_t n) {
  const auto b = [&](size_t k) { return char32_t(static_cast<unsigned char>(s[i + k])); };
  if (n == 1) return b(0);
  char32_t cp = b(0) & (n == 2 ? 0x1Fu : n == 3 ? 0x0Fu : 0x07u);
  for (size_t k = 1; k < n; ++k) cp = (cp << 6) | (b(k) & 0x3Fu);
  return cp;
}

/// Whether `cp` is a character that is invisible or reorders the text around it when printed: the format
/// characters (Unicode category Cf) such as the bidirectional controls U+202A..U+202E and U+2066..U+2069
/// (U+202E shows "abc" as "cba"), U+200B..U+200F (zero-width, LRM, RLM), U+061C, U+2060..U+2064 and U+FEFF; also
/// U+034F, U+115F, U+1160, U+3164, U+FFA0 (invisible fillers) and the tag characters.
bool is_invisible_format(char32_t cp) {
  return cp == 0x00AD || cp == 0x034F || cp == 0x061C || cp == 0x115F || cp == 0x1160 ||
         (cp >= 0x180B && cp <= 0x180E) || (cp >= 0x200B && cp <= 0x200F) || (cp >= 0x2028 && cp <= 0x202E) ||
         (cp >= 0x2060 && cp <= 0x206F) || cp == 0x3164 || (cp >= 0xFE00 && cp <= 0xFE0F) || cp == 0xFEFF ||
         cp == 0xFFA0 || (cp >= 0xFFF9 && cp <= 0xFFFB) || (cp >= 0x1D173 && cp <= 0x1D17A) ||
         (cp >= 0xE0000 && cp <= 0xE0FFF);
}

/// Number of characters of `text` as escape_for_terminal reads it: each well-formed sequence, and each other
/// byte, is one.
size_t character_count(std::string_view text) {
  size_t count = 0;
  for (size_t i = 0; i < text.size(); ++count) {
    const size_t n = static_cast<unsigned char>(text[i]) < 0x80 ? 1 : sequence_length(text, i);
    i += n == 0 ? 1 : n;
  }
  return count;
}

/// The byte length of the first `chars` characters of `text` (counted as character_count does).
size_t prefix_bytes(std::string_view text, size_t chars) {
  size_t i = 0;
  for (size_t c = 0; c < chars && i < text.size(); ++c) {
    const size_t n = static_cast<unsigned char>(text[i]) < 0x80 ? 1 : sequence_length(text, i);
    i += n == 0 ? 1 : n;
  }
  return i;
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
    } else if (const char32_t cp = code_point(text, i, n); is_invisible_format(cp)) {
      out += cp > 0xFFFF ? fmt::format("\\U{:08X}", uint32_t(cp)) : fmt::format("\\u{:04X}", uint32_t(cp));
      i += n;
    } else {
      out.append(text.substr(i, n));
      i += n;
    }
  }
  return out;
}

std::string name_excerpt(std::string_view name, size_t max_chars) {
  const size_t chars = character_count(name);
  if (chars <= max_chars) return escape_for_terminal(name);
  return fmt::format("{}\u2026 ({} characters)", escape_for_terminal(name.substr(0, prefix_bytes(name, max_chars))),
                     chars);
}

std::string message_excerpt(std::string_view message, size_t head_chars, size_t tail_chars) {
  const size_t chars = character_count(message);
  if (chars <= head_chars + tail_chars) return escape_for_terminal(message);
  const size_t head = prefix_bytes(message, head_chars), tail = prefix_bytes(message, chars - tail_chars);
  return fmt::format("{} \u2026 ({} of its {} characters left out) \u2026 {}",
                     escape_for_terminal(message.substr(0, head)), chars - head_chars - tail_chars, chars,
                     escape_for_terminal(message.substr(tail)));
}

void check_utf8(std::string_view text, const std::string& source) {
  const auto bad = find_invalid_utf8(text);
  if (!bad) return;
  // The column counts characters (code points), as an editor shows it: the
  // text before the bad byte is valid UTF-8, so every byte that is not a
  // continuation byte (10xxxxxx) starts one character. A byte order mark at the start is no column (editors
  // do not show it).
  size_t line = 1, column = 1;
  for (size_t k = text.starts_with("\xEF\xBB\xBF") ? 3 : 0; k < *bad; ++k) {
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
