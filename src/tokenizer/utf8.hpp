#pragma once
// Small UTF-8 helpers for the tokenizer (RFC 3629).
#include <cstddef>
#include <string>
#include <string_view>

namespace kq::tok {

/// Appends the UTF-8 encoding of code point `cp` (must be <= 0x10FFFF).
void append_utf8(std::string& out, char32_t cp);

/// Decodes the well-formed UTF-8 sequence starting at s[i]. On success stores
/// the code point in `cp` and returns its length (1..4); returns 0 when the
/// bytes at i are not a complete, well-formed sequence (overlong forms,
/// surrogates and values above U+10FFFF are rejected).
size_t decode_utf8(std::string_view s, size_t i, char32_t& cp);

/// Number of trailing bytes of `s` (0..3) that form a valid but incomplete
/// UTF-8 sequence, i.e. a prefix that more bytes could complete. Returns 0
/// when `s` ends with a complete sequence or with bytes that can never
/// become valid.
size_t incomplete_utf8_tail(std::string_view s);

/// `s` with every ill-formed part replaced by U+FFFD: one replacement per
/// maximal subpart, i.e. a lead byte and the continuation bytes that could
/// still have completed it, or one byte otherwise (the Unicode Standard,
/// section 3.9, "U+FFFD Substitution of Maximal Subparts", as Python's
/// errors="replace" and Hugging Face decode do).
std::string replace_invalid_utf8(std::string_view s);

}  // namespace kq::tok
