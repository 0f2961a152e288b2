#pragma once
// The parts of a Hugging Face tokenizer.json that say how text becomes BPE
// words (normalizer, pre_tokenizer) and how pieces become text again
// (decoder): the layouts kq runs are byte-level BPE with the GPT-2 regex or a
// Split regex (Llama-3; Qwen2 with its NFC normalizer), and SentencePiece-style
// BPE with byte fallback (Llama-2). tokenizer_files.cpp reads the rest of the file.
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "tokenizer/normalizer.hpp"
#include "tokenizer/tokenizer_files.hpp"

namespace kq::tok {

/// obj[key]; FormatError "SOURCE: missing "key" in WHERE" when absent.
const nlohmann::json& member(const nlohmann::json& obj, const char* key, const std::string& source,
                             std::string_view where);

/// The "type" of a tokenizer.json component object ("" when it is not an object or has none).
std::string type_of(const nlohmann::json& p);

/// The boolean `obj[key]`; `absent` when it is missing or null. Any other JSON
/// type is a FormatError naming the file, `where` and the key.
bool flag(const nlohmann::json& obj, const char* key, bool absent, const std::string& source,
          std::string_view where);

/// Throws FormatError naming the file and the field (e.g.
/// "pre_tokenizer.pretokenizers[0].type") when the normalizer, pre_tokenizer,
/// post_processor or decoder of tokenizer.json, or a member of its Sequence at
/// any depth, has a "type" that is not a string (Hugging Face refuses the
/// file). The readers below take it as checked.
void check_component_types(const nlohmann::json& root, const std::string& source);

/// Whether tokenizer.json has a normalizer: one that is not null or a
/// Sequence of none (Hugging Face's identity; nested Sequences count as their
/// members). Throws FormatError naming the file and the field for a Sequence
/// without a "normalizers" array.
bool has_normalizer(const nlohmann::json& root, const std::string& source);

/// The SentencePiece-style description of a tokenizer.json that has a
/// normalizer other than a Unicode one (see byte_level_normalization) or a
/// Metaspace pre_tokenizer (BPE from characters: no ByteLevel), or nullopt
/// when it has neither (byte-level BPE, read by byte_level_normalization and
/// pretokenizer_regex). A nested normalizer Sequence is read as its members
/// in order, an empty one as no normalizer. Throws Unsupported naming the
/// file, the part and (for a normalizer) every normalizer kq runs for a
/// normalizer other than [Prepend "▁", Replace " " -> "▁"] (or that Replace
/// alone), a pre_tokenizer beside it, or a Metaspace other than replacement
/// "▁" with split false; FormatError for wrongly typed fields (as
/// has_normalizer for the normalizer's).
std::optional<SentencePieceSpec> sentencepiece_layout(const nlohmann::json& root, const std::string& source);

/// Whether the decoder of a SentencePiece-style tokenizer.json strips one
/// leading space after decoding; any decoder kq does not recognize is a
/// warning naming the file (kq decodes "▁" as a space and "<0xNN>" as its
/// byte all the same).
bool sentencepiece_strip(const nlohmann::json& root, const SentencePieceSpec& sp, const std::string& source);

/// The Unicode normalization of a byte-level tokenizer.json (one that
/// sentencepiece_layout leaves to byte-level BPE): the form of its NFC, NFD,
/// NFKC or NFKD normalizer, or those of a Sequence of them (nested ones
/// read as their members) in order; empty without a normalizer or with an
/// empty Sequence. Throws Unsupported naming the file, the normalizer and
/// every normalizer kq runs for any other.
std::vector<UnicodeForm> byte_level_normalization(const nlohmann::json& root, const std::string& source);

/// The pre-tokenization regex of a byte-level tokenizer.json: GPT-2's for a
/// ByteLevel pre_tokenizer with use_regex (alone or alone in a Sequence), the
/// Split's for a Sequence [Split, ByteLevel without use_regex] (Llama-3).
/// Throws Unsupported naming the file and the offending part for anything else.
std::string pretokenizer_regex(const nlohmann::json& root, const std::string& source);

}  // namespace kq::tok
