#pragma once
// GPT-2's reversible byte <-> unicode mapping ("bytes_to_unicode" in
// openai/gpt-2 encoder.py): the 188 printable bytes '!'..'~', '¡'..'¬',
// '®'..'ÿ' map to the code point of the same value; the other 68 bytes
// (0x00-0x20, 0x7F-0xA0, 0xAD), in increasing order, map to U+0100, U+0101, ...
// U+0143. BPE vocabularies store tokens as strings of these symbols.
#include <cstdint>
#include <string>
#include <string_view>

namespace kq::tok {

/// The symbol (code point) of byte b.
char32_t byte_to_unicode(uint8_t b);

/// The byte that symbol cp stands for, or -1 if cp is not one of the 256 symbols.
int unicode_to_byte(char32_t cp);

/// UTF-8 string of the symbols of `bytes` (e.g. " the" -> "Ġthe").
std::string bytes_to_symbols(std::string_view bytes);

/// Inverse of bytes_to_symbols for a vocabulary string: each symbol becomes
/// its byte; a code point that is not a byte symbol (or a malformed UTF-8
/// byte) is kept verbatim, so added tokens like "<|endoftext|>" or non-byte-
/// level strings decode to themselves.
std::string symbols_to_bytes(std::string_view symbols);

}  // namespace kq::tok
