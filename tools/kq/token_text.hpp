#pragma once
// How kq shows the bytes a token stands for (kq generate's messages about
// the EOS and prefix tokens, kq tokenize --tokens): double-quoted and escaped,
// so that a space, a control byte or half of a UTF-8 character is visible.
#include <cstdint>
#include <string>
#include <string_view>

#include "io/utf8_text.hpp"
#include "kq/tokenizer.hpp"

namespace kq::cli {

/// `bytes` double-quoted for a terminal: newline and tab as \n and \t, '"'
/// and '\' preceded by '\', then every other control byte, byte of no
/// well-formed UTF-8 sequence and invisible or reordering character as
/// io::escape_for_terminal writes it (\xNN, \u202E), e.g. "<|endoftext|>",
/// " world", "\xC3" (the first byte of "Ü"). Never throws (except std::bad_alloc).
inline std::string quoted_bytes(std::string_view bytes) {
  std::string text;
  for (const char ch : bytes) {
    if (ch == '\n')
      text += "\\n";
    else if (ch == '\t')
      text += "\\t";
    else if (ch == '"' || ch == '\\')
      text += std::string("\\") + ch;
    else
      text += ch;
  }
  return "\"" + io::escape_for_terminal(text) + "\"";
}

/// quoted_bytes of the bytes token `id` stands for (Tokenizer::decode_token,
/// whose InvalidArgument it throws for an id that is not a token).
inline std::string quoted_token(const Tokenizer& tok, int32_t id) { return quoted_bytes(tok.decode_token(id)); }

}  // namespace kq::cli
