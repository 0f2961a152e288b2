#pragma once
// Tokenizer::Impl: the immutable tables behind kq::Tokenizer (plus the
// thread-safe word cache), and their construction from a TokenizerSpec.
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "kq/tokenizer.hpp"
#include "tokenizer/bpe.hpp"
#include "tokenizer/normalizer.hpp"
#include "tokenizer/pretokenizer.hpp"
#include "tokenizer/tokenizer_files.hpp"
#include "tokenizer/word_cache.hpp"

namespace kq {

struct Tokenizer::Impl {
  enum Kind : uint8_t { kUnassigned = 0, kModel = 1, kAdded = 2 };
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };

  std::vector<std::string> token_str;    ///< [vocab_size] vocabulary form ("Ġthe"), "" if unassigned
  std::vector<std::string> token_bytes;  ///< [vocab_size] raw bytes the token stands for
  std::vector<uint8_t> kind;             ///< [vocab_size] Kind
  std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>> str_to_id;
  /// An added token as encode() looks for it in a text: `text` is its content,
  /// or for a "normalized" one of a tokenizer with a Unicode normalizer, its
  /// content normalized.
  struct AddedMatch {
    std::string text;
    int32_t id = 0;
    bool special = true;  ///< matched only with EncodeOptions::allow_special
    bool normalized = false;
  };
  /// The added tokens, by id order of listing: build() fills it (add_special),
  /// then splits it into match_raw / match_normalized.
  std::vector<AddedMatch> added;
  /// Hugging Face's two passes: the non-normalized added tokens are found in
  /// the raw text, then the normalized ones in each normalized part between
  /// them; each list has the longest text first (leftmost match wins, the
  /// longest among those at one position, as Hugging Face's LeftmostLongest).
  std::vector<AddedMatch> match_raw, match_normalized;
  std::optional<int32_t> bos, eos;
  std::vector<int32_t> prefix, suffix;  ///< Tokenizer::prompt_prefix() / prompt_suffix()
  std::string source;  ///< which files it was built from (Tokenizer::source())
  tok::BpeModel bpe;
  tok::Pretokenizer pre;
  /// tokenizer.json's Unicode normalizer (NFC for Qwen2; empty: none), applied
  /// by encode_plain to each section of text before `pre` splits it.
  std::vector<tok::UnicodeForm> normalization;
  /// SentencePiece-style (TokenizerSpec::sentencepiece): each section of text
  /// becomes one word by this rule (no regex), BPE starts from characters.
  std::optional<tok::MetaspaceRule> metaspace;
  /// decode() drops one leading space (the SentencePiece decoder's Strip).
  bool strip_leading_space = false;
  /// Results of pre+bpe per pre-token: one cache per Impl, i.e. per regex
  /// and BPE model (tokenizers built from different files never share one).
  mutable tok::WordCache cache;

  /// Compiles the pre-tokenization regex (tok::Pretokenizer: FormatError
  /// naming `regex_source` when PCRE2 rejects it); build() fills the rest.
  Impl(std::string_view regex, std::string_view regex_source) : pre(regex, regex_source) {}

  /// Validates `spec` and builds the tables. "<|endoftext|>", when in the
  /// vocabulary, is always an added (special) token and the default bos/eos.
  /// Throws FormatError naming the spec's files.
  static std::shared_ptr<const Impl> build(const tok::TokenizerSpec& spec);

  /// Appends the ids of raw text (no added-token matching). `at_text_start`:
  /// the text begins the encoded text (not after an added token), for the
  /// SentencePiece rule that prepends "▁" to the first section only.
  /// `normalized`: the text is already normalized (`normalization` is not applied again).
  void encode_plain(std::string_view text, std::vector<int32_t>& ids, bool at_text_start = true,
                    bool normalized = false) const;
  /// Throws InvalidArgument unless id is an assigned token.
  void check_id(int32_t id) const;
};

}  // namespace kq
