#pragma once
// Byte-pair-encoding merge loop (Sennrich et al. 2016, "Neural Machine
// Translation of Rare Words with Subword Units"): the byte-level variant of
// GPT-2, and the character-level one of SentencePiece-converted tokenizers
// (Llama-2) with byte fallback.
#include <array>
#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace kq::tok {

/// One merge rule: left + right -> merged (token ids), in rank order.
struct MergeRule {
  int32_t left, right, merged;
};

/// Immutable BPE model over token ids. Thread-safe.
class BpeModel {
 public:
  BpeModel() = default;
  /// byte_ids[b]: id of the single-byte token of byte b. rules: merges in
  /// priority order (index = rank, 0 merges first); a pair listed twice keeps
  /// its last rank (as GPT-2's dict(zip(merges, range(n))) and HF tokenizers do).
  /// whole_words (raw bytes -> id), when not empty, is Hugging Face's BPE
  /// "ignore_merges": a pre-token equal to a key is that one token, without
  /// merging (Llama-3: its vocabulary comes from tiktoken, which looks a word up whole first).
  struct StrHash {
    using is_transparent = void;
    size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  using WholeWords = std::unordered_map<std::string, int32_t, StrHash, std::equal_to<>>;
  BpeModel(const std::array<int32_t, 256>& byte_ids, const std::vector<MergeRule>& rules, WholeWords whole_words = {});

  /// The first symbols of a word of a SentencePiece-style BPE (Hugging Face's
  /// BPE model without ByteLevel: Llama-2's tokenizer.json), one per UTF-8
  /// character: the character's vocabulary token; else (byte_fallback) its
  /// bytes' "<0xNN>" tokens when all of them exist; else the unk token (fused
  /// with a directly preceding unk when fuse_unk), or nothing without one. As
  /// in Hugging Face's BPE::merge_word, a pending unk is emitted only before
  /// the next character that has a token or at the end of the word, i.e.
  /// after the byte tokens of characters between (which needs a vocabulary
  /// missing some byte tokens). A byte that is not part of well-formed UTF-8 is
  /// a character of its own that no token has (byte fallback, else unk).
  struct CharSymbols {
    std::unordered_map<char32_t, int32_t> chars;  ///< single-character vocabulary tokens
    std::array<int32_t, 256> byte_tokens{};       ///< "<0xNN>" ids; -1: missing (or no byte_fallback)
    int32_t unk = -1;                             ///< -1: no unk token
    bool fuse_unk = false;
  };
  /// A character-level model; whole_words (ignore_merges) are then keyed by
  /// the word itself (vocabulary strings, "▁" included).
  BpeModel(CharSymbols chars, const std::vector<MergeRule>& rules, WholeWords whole_words = {});

  /// Appends the BPE ids of one pre-token (raw bytes) to `out`. Starts from
  /// one symbol per byte (per character with CharSymbols) and repeatedly
  /// applies the lowest-rank merge among adjacent symbol pairs, leftmost first
  /// among equal ranks, until none applies. O(n log n) in the word length:
  /// symbols form a linked list and candidate pairs sit in a min-heap keyed by
  /// (rank, position), stale entries being skipped when popped. With whole
  /// words (ignore_merges), a pre-token that is one of them gives its id alone.
  void encode_word(std::string_view bytes, std::vector<int32_t>& out) const;

  size_t num_merges() const { return num_rules_; }
  bool ignore_merges() const { return !whole_words_.empty(); }

 private:
  struct Merge {
    int32_t rank, merged;
  };
  /// The character-level first symbols of `word` (CharSymbols).
  void char_symbols(std::string_view word, std::vector<int32_t>& id) const;
  /// Applies the merges to the symbols `id` (the loop of encode_word) and appends the result to `out`.
  void merge_all(std::vector<int32_t>& id, std::vector<int32_t>& out) const;
  static uint64_t key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  const Merge* find(int32_t a, int32_t b) const {
    const auto it = merges_.find(key(a, b));
    return it == merges_.end() ? nullptr : &it->second;
  }

  std::array<int32_t, 256> byte_ids_{};
  bool by_chars_ = false;  ///< SentencePiece-style: chars_ gives the first symbols
  CharSymbols chars_;
  std::unordered_map<uint64_t, Merge> merges_;
  WholeWords whole_words_;
  size_t num_rules_ = 0;
};

}  // namespace kq::tok
