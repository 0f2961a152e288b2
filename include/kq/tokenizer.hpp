#pragma once
// Byte-level BPE tokenizer, the GPT-2 algorithm (Radford et al. 2019,
// "Language Models are Unsupervised Multitask Learners", §2.2; reference code
// openai/gpt-2 encoder.py), as also used by Hugging Face's GPT2Tokenizer /
// tokenizers ByteLevel-BPE; and the SentencePiece-style BPE with byte
// fallback of Llama-2's tokenizer.json (below).
//
// Pipeline of encode():
//   1. split the text on the added tokens (see "Added tokens in text" below:
//      the special ones such as "<|endoftext|>" only with
//      EncodeOptions::allow_special), which become their ids;
//   2. pre-tokenize each segment with a regex (PCRE2, UTF + UCP): GPT-2's
//        's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//      (vocab.json + merges.txt, tokenizer.json's ByteLevel pre_tokenizer), or
//      the pattern of tokenizer.json's Split pre_tokenizer (Llama-3's
//      (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|...);
//      the matches and the text between them are the pre-tokens (Split's
//      behavior "Isolated"), empty ones dropped;
//   3. map every byte of a pre-token to its GPT-2 "bytes_to_unicode" symbol;
//   4. with tokenizer.json's model.ignore_merges (Llama-3), a pre-token that is
//      itself a vocabulary token is that token; otherwise apply BPE merges by
//      rank (lowest rank first, leftmost first among equal ranks) until no
//      merge applies; emit the ids of the resulting symbols.
// Before step 2, a tokenizer.json normalizer of Unicode forms (NFC for Qwen2
// and Qwen2.5; NFD, NFKC, NFKD, or a Sequence of them) is applied to the text
// (to each part between added tokens) by utf8proc
// (Unicode 15.0); ill-formed bytes stay as they are and the well-formed runs
// around them are normalized on their own. No BOS/EOS is added
// (Tokenizer::prompt_prefix() says which Hugging Face would add) and no other
// normalization is done.
//
// SentencePiece-style tokenizer.json (Llama-2, TinyLlama, Mistral: BPE
// converted from SentencePiece, byte_fallback) replaces steps 2-4: each
// section of text (all of it, or each part between added tokens) is ONE
// word, its spaces replaced by "▁" (U+2581) and "▁" prepended, as the file
// says: the legacy normalizer [Prepend "▁", Replace " " -> "▁"] prepends to
// every non-empty section; the Metaspace pre_tokenizer (split false)
// prepends, unless the section already starts with "▁" or " ", to the first
// section only (prepend_scheme "first": not after an added token), to every
// one ("always") or to none ("never"). BPE then starts from the word's
// characters, not bytes: a character without a vocabulary token becomes the
// "<0xNN>" tokens of its UTF-8 bytes (byte_fallback; an ill-formed byte is
// such a character), else the unk token (consecutive ones fused with
// fuse_unk), as Hugging Face's BPE does; merges apply by rank as above.
// decode() turns "▁" into " " and "<0xNN>" into its byte and, as the
// decoder's Strip (or a Metaspace decoder) says, drops one leading space of
// the decoded text; decode_token() never strips. So decode(encode(x)) == x
// for text without added tokens, except that text starting with " " (or
// containing "▁") does not survive a Metaspace layout, as in Hugging Face.
//
// \p{L}, \p{N} and \s
// follow PCRE2's Unicode tables (Debian 12's PCRE2 10.42: Unicode 14; \s =
// Z categories + HT LF VT FF CR, which includes U+180E but not U+0085): code
// points assigned after that Unicode version, U+0085 and U+180E may be split
// differently than by a tokenizer built on other tables. Token ids of text
// made of Unicode-14 characters match openai/gpt-2 encoder.py exactly.
//
// Added tokens in text: an added token that is not special ("special": false
// in tokenizer.json's added_tokens or tokenizer_config.json's
// added_tokens_decoder, e.g. Qwen2.5's "<tool_call>") is always recognized,
// as Hugging Face's tokenizers do. Special ones (and "<|endoftext|>", the
// bos / eos tokens, and an entry without "special") are recognized only with
// EncodeOptions::allow_special (a documented choice): by default a literal
// "<|endoftext|>" inside the text is encoded as ordinary characters ("<", "|",
// "endoftext", ...). This is what perplexity evaluation wants (the perplexity
// protocol tokenizes raw text; none of the shared texts or
// tokenizer_cases.json contain the string, so both choices give the same ids
// there); Hugging Face recognizes special tokens too unless
// split_special_tokens is set: pass EncodeOptions{.allow_special = true} for
// that (e.g. for chat/generation prompts). As in Hugging Face, the tokens
// whose "normalized" is false (absent: not special) are found in the raw text
// first; then, in each part between them, those whose "normalized" is true
// are found in the part's normalized form (a Unicode normalizer's; their
// content normalized too), so an NFD "ḱ" in the text matches a token "ḱ"
// under an NFC normalizer. The leftmost match wins, the longest among those
// at one position. Only exact matches of a token's content are recognized
// (the lstrip/rstrip/single_word flags of tokenizer.json are ignored with a
// warning at load, as is "normalized" under a SentencePiece-style
// normalizer; they are all false for GPT-2).
//
// Invalid UTF-8 (a documented choice): encode() works on bytes and accepts any
// byte string. PCRE2 runs with PCRE2_MATCH_INVALID_UTF, under which invalid
// sequences never match; every maximal run of bytes that the regex leaves
// between two matches becomes a pre-token of its own and is BPE-encoded byte
// by byte like any other pre-token (each byte has a token). Hence for ANY byte
// string x: decode(encode(x)) == x, or x with its well-formed runs normalized
// under a Unicode normalizer. Valid UTF-8 is never affected (GPT-2's and
// Llama-3's regexes cover every valid character).
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace kq {

/// Options of Tokenizer::encode.
struct EncodeOptions {
  /// Also recognize the contents of special added tokens (e.g.
  /// "<|endoftext|>") in the text and emit their ids. Default false: they are
  /// ordinary text. Non-special added tokens are always recognized (see the
  /// header comment, "Added tokens in text").
  bool allow_special = false;
};

/// Options of Tokenizer::load.
struct LoadOptions {
  /// The caller puts prompt_prefix() before its text, as Hugging Face does
  /// (`kq generate` before its prompt): the load-time warning about the
  /// special tokens Hugging Face adds before every text is then left out;
  /// those after the text (prompt_suffix()) are still warned about. Default
  /// false: one warning line per file names them all (see prompt_prefix()).
  bool puts_prompt_prefix = false;
};

/// A BPE tokenizer (byte-level as GPT-2's and Llama-3's, or SentencePiece-style
/// as Llama-2's). Immutable after loading; copies are
/// cheap and share the tables and the per-word cache. All const member
/// functions are thread-safe (the word cache is guarded by a mutex).
/// Movable: a moved-from tokenizer has no tables; every member function called
/// on it (model_vocab_size() of a bound one included) throws InvalidArgument
/// ("Tokenizer: moved-from tokenizer ...") until a loaded tokenizer is assigned
/// to it. There is no default constructor: Tokenizer::load() makes one.
class Tokenizer {
 public:
  /// Loads the tokenizer of a Hugging Face model folder. DIR/tokenizer.json
  /// (fast-tokenizer format: model.vocab, model.merges as "a b" strings or
  /// ["a","b"] pairs, added_tokens) is preferred, as transformers'
  /// AutoTokenizer does; DIR/vocab.json + DIR/merges.txt are used when there is
  /// no tokenizer.json, or when it describes a tokenizer this library does not
  /// support (Unsupported below) and the pair exists. source() says which; such
  /// a fallback is also a warning (kq::warn) naming tokenizer.json and why.
  /// DIR/tokenizer_config.json, when present, names bos_token / eos_token (and
  /// added_tokens_decoder in the vocab.json route).
  /// Throws FormatError naming the file: missing files, a tokenizer_config.json
  /// (or a vocab.json / merges.txt needed) that is there but not a regular file
  /// (a folder, FIFO, device or dangling link, named as such and never
  /// opened; a tokenizer.json that is no file is the fallback above, or this
  /// error without the pair), bad JSON (a malformed
  /// tokenizer.json is an error even when vocab.json + merges.txt exist),
  /// merges or added tokens referencing unknown tokens or ids, a byte without
  /// a token, a token id (vocab.json, tokenizer.json's model.vocab and
  /// added_tokens, tokenizer_config.json's added_tokens_decoder keys) that is not
  /// an integer in [0, 16777215] (2^24 - 1), or ids so sparse that the largest
  /// is >= 2 x the token count + 1024, a Split regex that PCRE2 cannot compile
  /// (its message and offset), a model.unk_token that is not in the
  /// vocabulary. Throws Unsupported for a tokenizer.json that is not BPE of
  /// one of these kinds: byte-level whose pre_tokenizer is ByteLevel with the
  /// GPT-2 regex or Sequence [Split (behavior "Isolated", invert false),
  /// ByteLevel with use_regex false], without a normalizer or with one of
  /// Unicode forms (NFC, NFD, NFKC, NFKD, or a Sequence of them); SentencePiece-style
  /// (see the header comment) with the normalizer Sequence [Prepend "▁",
  /// Replace " " -> "▁"] (or that Replace alone) and no pre_tokenizer, or no
  /// normalizer and a Metaspace pre_tokenizer with replacement "▁" and split
  /// false (other model/pre_tokenizer/normalizer types and layouts,
  /// add_prefix_space, byte_fallback with ByteLevel, subword
  /// prefixes/suffixes, dropout) when there is no vocab.json + merges.txt to
  /// fall back to. Throws InvalidArgument for an empty `model_dir`; FormatError
  /// naming the folder when it holds kq quantize's staging marker .kq-staging (an
  /// unfinished output, OUT.tmp-XXXXXX), as load_model_config.
  static Tokenizer load(const std::filesystem::path& model_dir, const LoadOptions& opts = {});

  /// Loads GPT-2 style files: vocab.json ({token: id}) and merges.txt (one
  /// "a b" pair per line in rank order; a first line starting with "#version"
  /// is skipped). "<|endoftext|>", if in the vocabulary, is the special
  /// bos/eos token. Ids must be integers in [0, 16777215] (2^24 - 1), as for
  /// load(). Throws FormatError naming the file.
  static Tokenizer from_files(const std::filesystem::path& vocab_json,
                              const std::filesystem::path& merges_txt);

  /// Token ids of `text` (any bytes; see the header comment). No BOS/EOS added.
  std::vector<int32_t> encode(std::string_view text, const EncodeOptions& opts = {}) const;

  /// The bytes the ids stand for, concatenated (special tokens included as
  /// their text); for a SentencePiece-style tokenizer whose decoder strips
  /// it, without one leading space (see the header comment). The result may
  /// be invalid UTF-8 if the ids split a character.
  /// Padding ids (see for_model()) decode to nothing (zero bytes).
  /// Throws InvalidArgument for any other id that is not an assigned token:
  /// negative, unassigned, or >= model_vocab_size(); the message names the
  /// tokenizer's size (and the model's, when for_model() gave it).
  std::string decode(std::span<const int32_t> ids) const;

  /// Raw bytes of one token (possibly a partial UTF-8 sequence; see
  /// StreamDecoder); empty for a padding id. Throws InvalidArgument like decode().
  const std::string& decode_token(int32_t id) const;

  /// The token's string as stored in the vocabulary (byte-level symbols,
  /// e.g. "Ġthe" for " the"; SentencePiece pieces, e.g. "▁the", "<0x0A>"). Throws InvalidArgument like decode(), and also
  /// for a padding id (it has no vocabulary string).
  const std::string& id_to_token(int32_t id) const;

  /// Id of a vocabulary string in its stored form ("Ġthe", "<|endoftext|>"),
  /// or nullopt.
  std::optional<int32_t> token_to_id(std::string_view token) const;

  /// One past the largest token id of the tokenizer (BPE vocabulary and
  /// added tokens). The model's vocabulary may be larger: model_vocab_size().
  int32_t vocab_size() const;

  /// The vocabulary size of the model this tokenizer was bound to by
  /// for_model() (config.json vocab_size, the rows of the embedding and of
  /// lm_head); vocab_size() when it was not bound.
  int64_t model_vocab_size() const;

  /// Beginning/end-of-text token: tokenizer_config.json's bos_token /
  /// eos_token when given, else "<|endoftext|>" when in the vocabulary, else nullopt.
  std::optional<int32_t> bos_token_id() const;
  std::optional<int32_t> eos_token_id() const;

  /// The ids of the special tokens Hugging Face adds before (prompt_prefix)
  /// and after (prompt_suffix) every single encoded text, e.g. {1} ("<s>")
  /// and {} for Llama-2, {128000} ("<|begin_of_text|>") and {} for Llama-3,
  /// {} and {} for GPT-2. They come from tokenizer.json's post_processor (the
  /// "single" template of TemplateProcessing, cls / sep of Roberta- and
  /// BertProcessing, with the ids they give as Hugging Face adds them, and
  /// those of a Sequence's processors, in order); a
  /// tokenizer_config.json that gives add_bos_token / add_eos_token replaces
  /// the part before / after with the BOS / EOS token (bos_token / eos_token,
  /// default "<|endoftext|>") when the value is true as Python tests it, and
  /// with nothing otherwise, as transformers' slow tokenizers (and
  /// LlamaTokenizerFast) do. Such a token that is not in the vocabulary nor
  /// an added token is a warning at load, and that list is empty (one warning
  /// for a bos_token / eos_token that does not resolve: the one naming it).
  /// Non-empty lists are a one-line warning at load (one per file that gives
  /// them; LoadOptions::puts_prompt_prefix leaves the prefix out). encode()
  /// never adds them: a caller that wants Hugging Face's ids puts them around
  /// the text (`kq generate` puts the prefix before its prompt; perplexity
  /// evaluation uses neither: the perplexity protocol). Never throws on a loaded
  /// tokenizer (InvalidArgument on a moved-from one).
  const std::vector<int32_t>& prompt_prefix() const;
  const std::vector<int32_t>& prompt_suffix() const;

  /// true for added/special tokens (e.g. "<|endoftext|>"), which BPE never produces.
  bool is_special(int32_t id) const;

  /// Number of BPE merges.
  size_t num_merges() const;

  /// The files the tokenizer was built from: "tokenizer.json",
  /// "vocab.json + merges.txt", or "vocab.json + merges.txt (tokenizer.json
  /// not used: <why>)" when load() fell back (see load()).
  const std::string& source() const;

  /// Checks that this tokenizer belongs to a model of `model_vocab` tokens:
  /// a tokenizer with more tokens than the model (another model's) would give
  /// ids the model does not have, caught only mid-forward. Throws FormatError
  /// naming `model_dir`, source() and both sizes.
  void check_fits(int64_t model_vocab, const std::string& model_dir) const;

  /// This tokenizer bound to a model whose vocabulary has `model_vocab` ids
  /// (config.json vocab_size). Many checkpoints pad the embedding and lm_head
  /// beyond the tokenizer (to a multiple of 64 or 128, e.g. 50257 -> 50304),
  /// so a sampler can pick an id that no token stands for. In the returned
  /// tokenizer such padding ids, i.e. ids in [0, model_vocab) that the
  /// tokenizer does not assign (>= vocab_size(), or a gap in its ids), decode
  /// to nothing (zero bytes; a documented choice, not U+FFFD: Hugging Face's
  /// fast tokenizers, the `tokenizers` library that transformers' decode runs,
  /// drop ids they have no token for, so their decode yields "" for them too),
  /// and generation goes on. Ids < 0 or >= model_vocab stay an InvalidArgument.
  /// Encoding is unchanged (it never produces a padding id). Checks the sizes
  /// as check_fits() does (FormatError naming `model_dir`); throws
  /// InvalidArgument naming model_vocab when it is < 1 (no vocabulary size)
  /// or above 2^31 (ids are int32).
  Tokenizer for_model(int64_t model_vocab, const std::string& model_dir) const;

  struct Impl;

 private:
  explicit Tokenizer(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
  /// The tables; throws InvalidArgument for a moved-from tokenizer (impl_ null).
  const Impl& impl() const;
  /// The bytes of `id`, nullptr for a padding id; throws InvalidArgument
  /// (decode's errors) for any other unassigned id.
  const std::string* bytes_of(int32_t id) const;
  std::shared_ptr<const Impl> impl_;
  int64_t model_vocab_ = 0;  ///< 0: not bound to a model (no padding ids)
};

/// Turns a stream of token ids into printable UTF-8 pieces for streaming
/// generation. A token may end in the middle of a multi-byte character (GPT-2
/// splits e.g. "日" into 2-3 byte tokens), so push() holds back a trailing
/// *incomplete but so far valid* UTF-8 sequence (at most 3 bytes) until the
/// following bytes arrive, and returns everything before it. Bytes that can
/// never become valid UTF-8 are passed through unchanged rather than held.
/// flush() returns what is still held (call it at the end of generation).
/// The concatenation of all push() results and flush() equals decode(ids)
/// (InvalidBytes::Keep), or that with every ill-formed part replaced by
/// U+FFFD (InvalidBytes::Replace: always valid UTF-8, for a terminal).
class StreamDecoder {
 public:
  /// What happens to bytes that can never become valid UTF-8.
  enum class InvalidBytes {
    Keep,     ///< passed through unchanged
    Replace,  ///< one U+FFFD per maximal ill-formed subpart (as Hugging Face decode / Python
              ///< errors="replace")
  };
  /// A decoder for raw bytes only (push_bytes); push(id) then throws InvalidArgument.
  /// Both constructors throw InvalidArgument for a `mode` that is not an
  /// InvalidBytes value (e.g. InvalidBytes(7)).
  explicit StreamDecoder(InvalidBytes mode = InvalidBytes::Keep);
  /// `tok` must outlive the decoder.
  explicit StreamDecoder(const Tokenizer& tok, InvalidBytes mode = InvalidBytes::Keep);

  /// Appends the bytes of token `id`; returns the bytes now safe to print.
  /// A padding id (Tokenizer::for_model) appends nothing. Throws
  /// InvalidArgument for an invalid id (see Tokenizer::decode_token) or when
  /// constructed without a tokenizer.
  std::string push(int32_t id);
  /// Same with raw bytes.
  std::string push_bytes(std::string_view bytes);
  /// Returns and clears the held-back bytes (an incomplete sequence: as is,
  /// or one U+FFFD with InvalidBytes::Replace).
  std::string flush();
  /// Bytes currently held back (0..3).
  size_t pending() const { return buf_.size(); }

 private:
  const Tokenizer* tok_ = nullptr;
  InvalidBytes mode_ = InvalidBytes::Keep;
  std::string buf_;
};

}  // namespace kq
