#pragma once
// The end-of-sequence (EOS) token ids that stop text generation, read from a
// Hugging Face model folder the way transformers resolves them.
#include <cstdint>
#include <filesystem>
#include <optional>
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
/// before the JSON, nesting deeper than io::kMaxJsonDepth or invalid JSON;
/// FormatError naming the folder when it holds kq quantize's staging marker
/// .kq-staging (io::check_not_staging_folder), whose files may be missing.
EosTokens load_eos_token_ids(const std::filesystem::path& model_dir, int64_t vocab_size);

/// The generation defaults a model folder's generation_config.json sets (the
/// keys of Hugging Face transformers' GenerationConfig that `kq generate`
/// applies). Each member is empty when the file is absent or the key is
/// absent or null (transformers' None); what they mean for sampling is
/// resolve_generation_defaults' business (tools/kq/generate.cpp).
struct GenerationDefaults {
  std::optional<bool> do_sample;             ///< true: sample; false: greedy decoding
  std::optional<float> temperature;          ///< softmax temperature, >= 0
  std::optional<int> top_k;                  ///< >= 0 (0 = no limit)
  std::optional<float> top_p;                ///< in (0, 1]
  std::optional<float> repetition_penalty;   ///< > 0 (1 = off; CTRL, Keskar et al. 2019)
  std::optional<int64_t> max_new_tokens;     ///< 0 .. 2^30
  std::string source;                        ///< "DIR/generation_config.json", or "" when the file is absent
};

/// The sampling keys of DIR/generation_config.json (do_sample, temperature,
/// top_k, top_p, repetition_penalty, max_new_tokens); all empty when the file
/// is absent. Throws FormatError naming the file and the key for a value of
/// the wrong JSON type (do_sample not a boolean, top_k / max_new_tokens not
/// an integer, the others not a number) or out of range (temperature < 0,
/// top_p outside (0, 1], top_k < 0, repetition_penalty <= 0,
/// max_new_tokens < 0 or > 2^30), for a file that is only a link leading
/// nowhere, and as load_eos_token_ids does for an unreadable or invalid file
/// or a staging folder.
GenerationDefaults load_generation_defaults(const std::filesystem::path& model_dir);

}  // namespace kq
