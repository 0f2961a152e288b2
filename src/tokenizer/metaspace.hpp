#pragma once
// SentencePiece-style text handling of tokenizer.json files converted from
// SentencePiece BPE models (Llama-2, TinyLlama, Mistral): spaces are the
// metaspace "▁" (U+2581), one is prepended to the text, and byte-fallback
// tokens "<0xNN>" stand for single bytes. Hugging Face tokenizers gives it as
// a normalizer Sequence [Prepend "▁", Replace " " -> "▁"] (the legacy layout)
// or a Metaspace pre_tokenizer (split false); see MetaspaceRule.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace kq::tok {

/// "▁" (U+2581 LOWER ONE EIGHTH BLOCK), SentencePiece's space, in UTF-8.
inline constexpr std::string_view kMetaspace = "\xE2\x96\x81";

/// How one section of text (the text, or a part between added tokens) becomes
/// the one word that BPE sees: every " " replaced by "▁", and "▁" prepended
/// as `prepend` says. The section is never split further (Metaspace split false).
struct MetaspaceRule {
  enum class Prepend : uint8_t {
    kNever,         ///< Metaspace prepend_scheme "never"; a normalizer with Replace only
    kEverySection,  ///< the Prepend normalizer; Metaspace prepend_scheme "always"
    kFirstSection,  ///< Metaspace prepend_scheme "first": only to the section at the start of the text
  };
  Prepend prepend = Prepend::kNever;
  /// No "▁" is prepended to a section that already starts with one (after the
  /// replacement, i.e. also one starting with " "): the Metaspace
  /// pre_tokenizer's rule. The Prepend normalizer prepends unconditionally.
  bool unless_leading_metaspace = false;

  /// Appends the word of `section` to `out` ("" for an empty section: nothing
  /// is prepended to it). `at_text_start`: the section begins the text.
  void apply(std::string_view section, bool at_text_start, std::string& out) const;
};

/// The byte of a byte-fallback token "<0xNN>" (two hex digits, either case,
/// as Hugging Face's ByteFallback decoder reads them), or nullopt.
std::optional<uint8_t> byte_fallback_value(std::string_view token);

/// The name of the byte-fallback token of byte b, as Hugging Face's BPE looks it
/// up: "<0x" and two upper-case hex digits and ">", e.g. "<0xC3>".
std::string byte_fallback_token(uint8_t b);

/// The bytes a SentencePiece-style vocabulary string stands for: a byte-fallback
/// token is its byte, otherwise every "▁" becomes " " (the decoder's Replace).
std::string metaspace_to_bytes(std::string_view token);

}  // namespace kq::tok
