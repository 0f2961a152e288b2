#pragma once
// The end-of-sequence (EOS) token ids that stop text generation, read from a
// Hugging Face model folder the way transformers resolves them.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace kq {

/// EOS token ids of a model folder and the file they came from.
struct EosTokens {
  std::vector<int32_t> ids;  ///< in file order, duplicates removed; empty: generation never stops at EOS
  std::string source;        ///< "DIR/generation_config.json", "DIR/config.json", or "" when neither sets it
};

/// The `eos_token_id` of DIR/generation_config.json when that file exists and
/// sets the key (not null), else that of DIR/config.json, else none (empty
/// `ids`, empty `source`; the caller then uses the tokenizer's EOS token):
/// generation_config.json takes precedence as in Hugging Face transformers
/// (GenerationConfig). The value is one integer or a list of integers (several
/// EOS tokens, e.g. Llama 3's [128001, 128008, 128009]).
///  - An empty list sets no EOS token (empty `ids`, `source` = that file), as
///    in transformers (an empty eos tensor never stops generation); it does
///    not fall back, but is said with a warning (kq::warn) naming the file.
///  - Ids >= `vocab_size` (when vocab_size > 0) can never be generated: they
///    are dropped with a warning naming the file. When that drops every id of
///    a file, the file is passed over with a warning and the next source is
///    used (a model whose EOS ids all miss its vocabulary would otherwise
///    never stop).
/// A file that is there only as a symbolic link leading nowhere (dangling, or
/// a loop) is not absent: FormatError naming the file and the link's target.
/// Throws FormatError naming the file and the key for a value that is not an
/// integer or a list of integers, or an id < 0 or > 2^31 - 1, and (from
/// io::load_hf_json_file) for an unreadable file, a UTF-8 byte-order mark
/// before the JSON, nesting deeper than io::kMaxJsonDepth or invalid JSON.
EosTokens load_eos_token_ids(const std::filesystem::path& model_dir, int64_t vocab_size);

}  // namespace kq
