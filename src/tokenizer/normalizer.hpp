#pragma once
// Unicode normalization of the text before pre-tokenization: the NFC, NFD,
// NFKC and NFKD normalizers of Hugging Face tokenizers (Qwen2 / Qwen2.5 give
// "normalizer": {"type": "NFC"}), computed by utf8proc (Debian 12's 2.8.0:
// Unicode 15.0). Normalization of a character is stable across Unicode
// versions once the character is assigned, so text made of characters that
// both utf8proc's tables and Hugging Face's know normalizes identically.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace kq::tok {

/// A Unicode normalization form (UAX #15).
enum class UnicodeForm : uint8_t { kNfc, kNfd, kNfkc, kNfkd };

/// The form a tokenizer.json normalizer "type" names ("NFC", "NFD", "NFKC",
/// "NFKD", case-sensitive as in Hugging Face); nullopt for any other type.
std::optional<UnicodeForm> unicode_form(std::string_view type);

/// `text` in normalization form `form`. Text is bytes (kq encodes any byte
/// string, see kq/tokenizer.hpp): each maximal run of well-formed UTF-8 is
/// normalized on its own and every byte that is not part of one is kept as
/// it is, in place (so a combining mark after such a byte is not composed
/// with what precedes the byte, as after a U+FFFD). Hugging Face cannot be
/// given such text (its normalizers take Rust &str), so this is kq's choice;
/// nothing is dropped and well-formed text is not affected by it. ASCII text
/// is returned unchanged by every form. Throws std::bad_alloc, or kq::Error
/// should utf8proc refuse a well-formed run (it does not: a safeguard).
std::string normalize(std::string_view text, UnicodeForm form);

/// `text` normalized by each of `forms` in turn (a normalizer Sequence).
std::string normalize(std::string_view text, const std::vector<UnicodeForm>& forms);

}  // namespace kq::tok
