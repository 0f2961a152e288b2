#pragma once
// Reading tokenizer files into a neutral description (no validation of
// cross-references here; Tokenizer construction checks those).
//   - GPT-2 files: vocab.json {token: id} and merges.txt ("a b" per line).
//   - Hugging Face tokenizer.json (fast-tokenizer format, model type BPE).
//   - Hugging Face tokenizer_config.json (bos/eos tokens, added_tokens_decoder).
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "tokenizer/metaspace.hpp"
#include "tokenizer/normalizer.hpp"
#include "tokenizer/pretokenizer.hpp"

namespace kq::tok {

struct AddedTokenSpec {
  std::string content;  ///< literal text (not byte-level symbols)
  int32_t id = 0;
  std::string source;  ///< the file that lists it, for error messages ("" = the vocabulary's / config's)
  /// "special": matched in a text only with EncodeOptions::allow_special (a
  /// non-special one always, as Hugging Face does). Absent: true (kq's choice:
  /// Hugging Face's files always give it).
  bool special = true;
  /// "normalized": matched in the normalized text (after the Unicode
  /// normalizer), its content normalized too; else in the raw text. Absent:
  /// !special (Hugging Face's AddedToken default).
  bool normalized = false;
};

/// A special token Hugging Face adds before / after a single encoded text
/// (TokenizerSpec::prefix_tokens / suffix_tokens).
struct AroundTextToken {
  /// Its content; for a TemplateProcessing's token, the template's name for it
  /// (the key of its "special_tokens", by convention the content).
  std::string name;
  /// A post_processor's token: the ids Hugging Face adds for it, whatever the
  /// vocabulary gives `name` (a TemplateProcessing's special_tokens entry's
  /// "ids"; the id of a RobertaProcessing's / BertProcessing's [token, id]
  /// "cls" / "sep" pair), with the contents they stand for (that entry's
  /// "tokens"; the pair's token), checked against the vocabulary. Absent: the
  /// id of `name` in the vocabulary / added tokens (tokenizer_config.json's
  /// add_bos_token / add_eos_token).
  std::optional<std::vector<int32_t>> ids;
  std::vector<std::string> tokens;
  /// Where the post_processor gives `ids`, for messages: "special_tokens",
  /// "\"cls\"", "\"sep\"" ("" when `ids` is absent).
  std::string ids_origin;
};

/// The SentencePiece-style part of a tokenizer.json (Llama-2): BPE from
/// characters with byte fallback instead of byte-level BPE.
struct SentencePieceSpec {
  MetaspaceRule metaspace;  ///< the normalizer's or the Metaspace pre_tokenizer's "▁" handling
  bool byte_fallback = false;
  std::optional<std::string> unk_token;  ///< model.unk_token
  bool fuse_unk = false;
  /// The decoder strips one leading space from the decoded text (Strip " "
  /// start 1 after Replace "▁" -> " ", or a Metaspace decoder that prepends).
  bool strip_leading_space = false;
};

/// A BPE tokenizer as read from files. Strings are vocabulary strings
/// (byte-level symbols, or SentencePiece pieces with "▁") except AddedTokenSpec::content.
struct TokenizerSpec {
  std::vector<std::pair<std::string, int32_t>> vocab;
  std::vector<std::pair<std::string, std::string>> merges;  ///< in rank order
  std::vector<AddedTokenSpec> added;
  std::optional<std::string> bos_token, eos_token;  ///< contents, when a config names them
  /// The special tokens (contents) Hugging Face adds before / after a single
  /// encoded text: tokenizer.json's post_processor, then tokenizer_config.json's
  /// add_bos_token / add_eos_token, when given, replace the part before / after
  /// (Tokenizer::prompt_prefix()). The file that said so, for messages.
  std::vector<AroundTextToken> prefix_tokens, suffix_tokens;
  std::string prefix_source, suffix_source;
  /// The tokenizer_config.json setting that gave prefix_tokens / suffix_tokens
  /// ("\"add_bos_token\": true"), for warn_tokens_around_text; "" when it gave none.
  std::string prefix_setting, suffix_setting;
  /// The tokenizer.json whose post_processor adds special tokens around a text
  /// and that post_processor's type ("TemplateProcessing"), for
  /// warn_tokens_around_text; both "" when it adds none.
  std::string post_processor_source, post_processor_type;
  /// The pre-tokenization regex (PCRE2 syntax): GPT-2's, or the pattern of a
  /// tokenizer.json's Split pre-tokenizer.
  std::string pretokenizer_regex = std::string(kGpt2Pattern);
  std::string pretokenizer_source;  ///< the file that gives pretokenizer_regex ("" = kq's GPT-2 pattern)
  /// The Unicode normalization a byte-level tokenizer.json's normalizer does
  /// before pre-tokenization (NFC for Qwen2), in order; empty: none.
  std::vector<UnicodeForm> normalization;
  /// BPE "ignore_merges" (tokenizer.json): a pre-token that is itself a
  /// vocabulary token is that token, whatever the merges would make of it.
  bool ignore_merges = false;
  /// Set for a SentencePiece-style tokenizer.json (no pre-tokenization regex then).
  std::optional<SentencePieceSpec> sentencepiece;
  std::string vocab_source;   ///< file names for error messages
  std::string merges_source;
  std::string config_source;
  std::string description;  ///< which files were used, for Tokenizer::source()
};

/// Largest token id accepted (ids index dense tables).
inline constexpr int64_t kMaxTokenId = (int64_t(1) << 24) - 1;

/// Reads vocab.json and merges.txt. Throws FormatError naming the file
/// (missing/unreadable, bad JSON or a UTF-8 byte-order mark before it,
/// non-integer or out-of-range ids, a merges line that is not two
/// space-separated tokens, a line 1 that is neither empty nor the "#version"
/// line, with or without a UTF-8 byte-order mark before it). merges.txt is
/// read as Hugging Face's slow tokenizer reads it (split("\n")[1:-1]): line 1
/// is skipped (a byte-order mark before "#version" with it), and a last line
/// without a newline after it is dropped with a warning (kq::warn).
TokenizerSpec read_gpt2_files(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt);

/// Reads a tokenizer.json (its post_processor's special tokens into
/// prefix_tokens / suffix_tokens: warn_tokens_around_text warns about them
/// once tokenizer_config.json is applied). Throws FormatError naming the file
/// for malformed content (also a UTF-8 byte-order mark before the JSON, which
/// Hugging Face's parser refuses), Unsupported for a tokenizer that is not BPE of one of these
/// kinds: byte-level whose pre_tokenizer is ByteLevel with the GPT-2 regex
/// (GPT-2) or a Sequence of a Split (behavior "Isolated", not inverted) and a
/// ByteLevel without regex (Llama-3, Qwen2; the Split's pattern becomes
/// spec.pretokenizer_regex, compiled and checked by Tokenizer construction),
/// without a normalizer or with a Unicode one: NFC, NFD, NFKC or NFKD, or a
/// Sequence of them (Qwen2: NFC; spec.normalization); SentencePiece-style
/// (Llama-2; spec.sentencepiece) with a normalizer Sequence [Prepend "▁" (optional), Replace " " -> "▁"] and
/// no pre_tokenizer, or no normalizer and a Metaspace pre_tokenizer
/// (replacement "▁", split false, any prepend_scheme). A TemplateProcessing
/// post_processor (also inside a Sequence) whose "single" template names a
/// special token that is not in its "special_tokens", or whose entry there
/// has no "ids" array of token ids or no "tokens" array of strings, is a
/// FormatError naming the file and the token: Hugging Face's tokenizers
/// refuse such an entry at load and, for a missing one, fail to encode any
/// text with special tokens ("Missing SpecialToken with id"); the "pair"
/// template (never used for a single text) is not checked. The entry's ids
/// are the ones added, as Hugging Face adds them even where the vocabulary
/// gives the token another id (Tokenizer construction warns then). So are the
/// ids of a RobertaProcessing's / BertProcessing's "cls" (before the text) and
/// "sep" (after it): one of them that is missing or not a [token, id] pair (a
/// string and an id in [0, kMaxTokenId]) is a FormatError naming the file and
/// the key, as Hugging Face refuses it at load.
TokenizerSpec read_tokenizer_json(const std::filesystem::path& file);

/// Applies tokenizer_config.json: bos_token / eos_token (a string or an object
/// with "content"), add_bos_token / add_eos_token (prefix_tokens /
/// suffix_tokens: the BOS / EOS token when Python takes the value as true,
/// none otherwise; bos_token / eos_token default to "<|endoftext|>" when
/// absent) and, when `with_added` is set, the added_tokens_decoder
/// entries ({"<id>": {"content": ...}}). Throws FormatError naming the file
/// (malformed content, also a UTF-8 byte-order mark before the JSON, which
/// transformers' json.load refuses; add_bos_token / add_eos_token true with
/// bos_token / eos_token null, which transformers refuses at load too).
void read_tokenizer_config(const std::filesystem::path& file, TokenizerSpec& spec, bool with_added);

/// Warns (kq::warn), in one line per file, about the special tokens Hugging
/// Face adds around every encoded text that the tokenizer built from `spec`
/// adds (`before` / `after`: its prompt_prefix() / prompt_suffix() are not
/// empty; a token that did not resolve was warned about when it was built):
/// tokenizer_config.json's add_bos_token / add_eos_token (naming the file,
/// the setting and the token) and what the tokenizer.json's post_processor
/// adds that tokenizer_config.json left (naming the file, its type and the
/// tokens). `prefix_before_prompt` (LoadOptions::puts_prompt_prefix): the
/// caller puts the tokens before the text in front of its text, as Hugging
/// Face does, so only those after it are warned about. Never throws (except
/// what the warning handler throws).
void warn_tokens_around_text(const TokenizerSpec& spec, bool before, bool after, bool prefix_before_prompt);

}  // namespace kq::tok
