// Construction and validation of Tokenizer::Impl from a TokenizerSpec.
#include <algorithm>

#include <fmt/core.h>

#include "io/json_strict.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"
#include "tokenizer/byte_unicode.hpp"
#include "tokenizer/tokenizer_impl.hpp"
#include "tokenizer/utf8.hpp"

namespace kq {
namespace {

constexpr std::string_view kEndOfText = "<|endoftext|>";

/// Makes `id` an added token with `content` (literal text), matched in a text
/// as `special` / `normalized` say (AddedTokenSpec). A token listed again
/// (consistently) keeps its first settings, except that it becomes special
/// when the later listing is special (the bos / eos and "<|endoftext|>" calls).
/// Content that already has another id (a vocabulary token's, or an earlier
/// added token's) keeps that id with a warning, as Hugging Face's tokenizers
/// does ("Token 'x' was expected to have ID ... but was given ID ...").
void add_special(Tokenizer::Impl& t, const std::string& content, int32_t id, const std::string& source,
                 bool special = true, bool normalized = false) {
  if (content.empty()) raise<FormatError>("{}: added token {} has empty content", source, id);
  if (const auto it = t.str_to_id.find(content); it != t.str_to_id.end() && it->second != id) {
    warn(fmt::format("{}: added token '{}' has id {}, but '{}' already has id {} (in the vocabulary or as an "
                     "earlier added token); kq uses id {} for it, as Hugging Face does",
                     source, content, id, content, it->second, it->second));
    id = it->second;
  }
  const auto k = t.kind[size_t(id)];
  if (k != Tokenizer::Impl::kUnassigned && t.token_str[size_t(id)] != content)
    raise<FormatError>("{}: added token '{}' has id {}, which already belongs to '{}'", source, content, id,
                       t.token_str[size_t(id)]);
  if (k == Tokenizer::Impl::kAdded) {  // listed twice, consistently
    if (special)
      for (Tokenizer::Impl::AddedMatch& a : t.added)
        if (a.id == id) a.special = true;
    return;
  }
  t.kind[size_t(id)] = Tokenizer::Impl::kAdded;
  t.token_str[size_t(id)] = content;
  t.token_bytes[size_t(id)] = content;  // added tokens are literal text, not byte-level symbols
  t.str_to_id.emplace(content, id);
  t.added.push_back({content, id, special, normalized});
}

/// Splits t.added into t.match_raw and t.match_normalized (the latter's texts
/// normalized by the Unicode normalizer, when there is one), longest first.
void sort_added_matches(Tokenizer::Impl& t) {
  for (const Tokenizer::Impl::AddedMatch& a : t.added) {
    if (!a.normalized) {
      t.match_raw.push_back(a);
      continue;
    }
    Tokenizer::Impl::AddedMatch m = a;
    if (!t.normalization.empty()) m.text = tok::normalize(a.text, t.normalization);
    if (!m.text.empty()) t.match_normalized.push_back(std::move(m));
  }
  for (auto* list : {&t.match_raw, &t.match_normalized})
    std::stable_sort(list->begin(), list->end(),
                     [](const auto& x, const auto& y) { return x.text.size() > y.text.size(); });
}

/// The id of the special token `field` (bos_token / eos_token) that
/// tokenizer_config.json names, or "<|endoftext|>" when it names none. A
/// named token that is neither in the vocabulary nor an added token is a
/// warning (kq::warn, naming the file, the field and the token) and the token
/// is treated as absent (nullopt): Hugging Face transformers loads such a
/// tokenizer (it would append the token to the vocabulary, with an id the
/// model's embedding does not have), so refusing it made every command fail;
/// what truly needs the token (generation from an empty prompt needs a BOS
/// token) fails there, saying the tokenizer has none.
std::optional<int32_t> named_token(const Tokenizer::Impl& t, const std::optional<std::string>& name,
                                   const std::string& source, const char* field) {
  if (!name) {
    const auto it = t.str_to_id.find(kEndOfText);
    return it == t.str_to_id.end() ? std::nullopt : std::optional<int32_t>(it->second);
  }
  const auto it = t.str_to_id.find(*name);
  if (it == t.str_to_id.end()) {
    warn(fmt::format("{}: {} '{}' is not in the vocabulary nor an added token; the tokenizer has no {}",
                     source, field, io::text_excerpt(*name), field));
    return std::nullopt;
  }
  return it->second;
}

/// The ids of the special tokens `tokens` (TokenizerSpec::prefix_tokens /
/// suffix_tokens) that `source` says Hugging Face adds `where` ("before" /
/// "after") every text: the ids the post_processor gives (a
/// TemplateProcessing's special_tokens, a Roberta- / BertProcessing's cls /
/// sep pair; as Hugging Face adds them), else the id of the token's content. A
/// content, or a post_processor's id, that is neither in the vocabulary nor an
/// added token is a warning naming the file and the token, and none is added
/// (an empty result): a partial prefix would be neither Hugging Face's ids nor
/// the text's. (A bos_token / eos_token in `warned`, which named_token warned
/// about, is not warned about again.) A post_processor's id that the vocabulary / added tokens give
/// to another token than the post_processor says is a warning naming the
/// file, the token and both ids; the post_processor's id is added.
std::vector<int32_t> special_ids(const Tokenizer::Impl& t, const std::vector<tok::AroundTextToken>& tokens,
                                 const std::string& source, const char* where,
                                 const std::vector<std::string>& warned) {
  std::vector<int32_t> ids;
  for (const tok::AroundTextToken& s : tokens) {
    if (!s.ids) {
      const auto it = t.str_to_id.find(s.name);
      if (it == t.str_to_id.end()) {
        if (std::find(warned.begin(), warned.end(), s.name) != warned.end()) return {};  // named_token said so
        warn(fmt::format("{}: the special token '{}' to add {} the text is not in the vocabulary nor an added token; "
                         "kq adds none {} it",
                         source, io::text_excerpt(s.name), where, where));
        return {};
      }
      ids.push_back(it->second);
      continue;
    }
    for (size_t i = 0; i < s.ids->size(); ++i) {
      const int32_t id = (*s.ids)[i];
      if (size_t(id) >= t.kind.size() || t.kind[size_t(id)] == Tokenizer::Impl::kUnassigned) {
        warn(fmt::format("{}: the special token '{}' to add {} the text has id {} in the post_processor's {}, "
                         "which is not in the vocabulary nor an added token; kq adds none {} it",
                         source, io::text_excerpt(s.name), where, id, s.ids_origin, where));
        return {};
      }
      if (i < s.tokens.size())
        if (const auto it = t.str_to_id.find(s.tokens[i]); it != t.str_to_id.end() && it->second != id)
          warn(fmt::format("{}: the special token '{}' has id {} in the post_processor's {}, but the vocabulary / "
                           "added tokens give it {} (id {} is '{}'); kq adds id {} {} the text, as Hugging Face does",
                           source, io::text_excerpt(s.tokens[i]), id, s.ids_origin, it->second, id,
                           io::text_excerpt(t.token_str[size_t(id)]), id, where));
      ids.push_back(id);
    }
  }
  return ids;
}

/// A byte-level BPE vocabulary reaches a token longer than one byte only
/// through merges (Sennrich et al. 2016; GPT-2's merges.txt has one merge per
/// such token). With zero merges every byte would become its own token: a
/// plausible-looking but wrong tokenization (fresh-user finding: an empty
/// merges.txt gave 6859 tokens instead of 1655). Throws FormatError naming
/// the merges source when there are no merges although the vocabulary has
/// multi-byte tokens; special/added tokens (literal text) do not count. The
/// same holds for multi-character tokens of a SentencePiece-style vocabulary
/// (BPE from characters; its "<0xNN>" byte tokens and unk token do not count).
void reject_merges_missing(const Tokenizer::Impl& t, const tok::TokenizerSpec& spec) {
  if (!spec.merges.empty()) return;
  size_t multi = 0;
  const std::string* example = nullptr;
  // A SentencePiece-style vocabulary starts from characters: only tokens of
  // several characters need merges ("<0xNN>" byte tokens and the unk token do not).
  auto needs_merges = [&](size_t id) {
    if (!spec.sentencepiece) return t.token_bytes[id].size() > 1;
    const std::string& s = t.token_str[id];
    char32_t cp = 0;
    return !s.empty() && tok::decode_utf8(s, 0, cp) != s.size() && !tok::byte_fallback_value(s) &&
           s != spec.sentencepiece->unk_token;
  };
  for (size_t id = 0; id < t.kind.size(); ++id)
    if (t.kind[id] == Tokenizer::Impl::kModel && needs_merges(id)) {
      if (!example) example = &t.token_str[id];
      ++multi;
    }
  if (multi == 0) return;  // a byte-only vocabulary needs no merges
  raise<FormatError>(
      "{}: no merges, but the vocabulary ({}) has {} multi-{} tokens (e.g. '{}') that only merges can produce; "
      "every {} would become its own token. The merges are empty or missing: restore them from the model's "
      "original files",
      spec.merges_source, spec.vocab_source, multi, spec.sentencepiece ? "character" : "byte", *example,
      spec.sentencepiece ? "character" : "byte");
}

/// The vocabulary's tokens by their raw bytes, for BPE ignore_merges. Hugging
/// Face looks the byte-level form of a pre-token up in the model's vocabulary
/// (not the added tokens); that form consists of byte symbols only, so a
/// vocabulary string with other characters can never be looked up and is left out.
tok::BpeModel::WholeWords whole_words(const tok::TokenizerSpec& spec) {
  tok::BpeModel::WholeWords words;
  words.reserve(spec.vocab.size());
  for (const auto& [s, id] : spec.vocab) {
    std::string bytes = tok::symbols_to_bytes(s);
    if (tok::bytes_to_symbols(bytes) == s) words.emplace(std::move(bytes), id);
  }
  return words;
}

/// SentencePiece-style BPE ignore_merges: the word (the text with "▁") is
/// looked up among the vocabulary strings as they are.
tok::BpeModel::WholeWords vocab_words(const tok::TokenizerSpec& spec) {
  tok::BpeModel::WholeWords words;
  words.reserve(spec.vocab.size());
  for (const auto& [s, id] : spec.vocab) words.emplace(s, id);
  return words;
}

/// The first symbols of a SentencePiece-style BPE (tok::BpeModel::CharSymbols)
/// from the model's vocabulary (`t` holds it, before the added tokens): its
/// one-character tokens, its "<0xNN>" tokens (with byte_fallback), its unk
/// token. A model.unk_token that is not in the vocabulary is a FormatError
/// naming the file (Hugging Face fails on the first character that needs it).
tok::BpeModel::CharSymbols char_symbols(const Tokenizer::Impl& t, const tok::TokenizerSpec& spec) {
  const tok::SentencePieceSpec& sp = *spec.sentencepiece;
  tok::BpeModel::CharSymbols c;
  for (const auto& [s, id] : spec.vocab) {
    char32_t cp = 0;
    if (!s.empty() && tok::decode_utf8(s, 0, cp) == s.size()) c.chars.emplace(cp, id);
  }
  for (int b = 0; b < 256; ++b) {
    const auto it = sp.byte_fallback ? t.str_to_id.find(tok::byte_fallback_token(uint8_t(b))) : t.str_to_id.end();
    c.byte_tokens[size_t(b)] = it == t.str_to_id.end() ? -1 : it->second;
  }
  if (sp.unk_token) {
    const auto it = t.str_to_id.find(*sp.unk_token);
    if (it == t.str_to_id.end())
      raise<FormatError>("{}: model.unk_token '{}' is not in the vocabulary", spec.vocab_source,
                         io::text_excerpt(*sp.unk_token));
    c.unk = it->second;
  }
  c.fuse_unk = sp.fuse_unk;
  return c;
}

}  // namespace

std::shared_ptr<const Tokenizer::Impl> Tokenizer::Impl::build(const tok::TokenizerSpec& spec) {
  auto t = std::make_shared<Impl>(spec.pretokenizer_regex, spec.pretokenizer_source);
  t->normalization = spec.normalization;  // tokenizer.json's NFC (Qwen2) etc., before the regex splits
  t->source = spec.description;
  int64_t max_id = -1;
  for (const auto& [s, id] : spec.vocab) max_id = std::max<int64_t>(max_id, id);
  for (const auto& a : spec.added) max_id = std::max<int64_t>(max_id, a.id);
  if (spec.vocab.empty()) raise<FormatError>("{}: empty vocabulary", spec.vocab_source);
  // Ids index dense tables: refuse absurdly sparse ids rather than allocate for them.
  const int64_t entries = int64_t(spec.vocab.size() + spec.added.size());
  if (max_id >= 2 * entries + 1024)
    raise<FormatError>("{}: token ids are too sparse (largest id {} for {} tokens)", spec.vocab_source, max_id,
                       entries);
  const auto n = size_t(max_id + 1);
  t->token_str.resize(n);
  t->token_bytes.resize(n);
  t->kind.assign(n, kUnassigned);
  t->str_to_id.reserve(spec.vocab.size() + spec.added.size());

  for (const auto& [s, id] : spec.vocab) {
    if (t->kind[size_t(id)] != kUnassigned)
      raise<FormatError>("{}: id {} is given to both '{}' and '{}'", spec.vocab_source, id, t->token_str[size_t(id)], s);
    t->kind[size_t(id)] = kModel;
    t->token_str[size_t(id)] = s;
    t->token_bytes[size_t(id)] = spec.sentencepiece ? tok::metaspace_to_bytes(s) : tok::symbols_to_bytes(s);
    t->str_to_id.emplace(s, id);
  }

  std::array<int32_t, 256> byte_ids{};
  for (int b = 0; b < 256 && !spec.sentencepiece; ++b) {  // SentencePiece-style: char_symbols instead
    const std::string sym = tok::bytes_to_symbols(std::string(1, char(b)));
    const auto it = t->str_to_id.find(sym);
    if (it == t->str_to_id.end())
      raise<FormatError>("{}: no token for byte 0x{:02X} ('{}'): not a byte-level BPE vocabulary", spec.vocab_source,
                         b, sym);
    byte_ids[size_t(b)] = it->second;
  }

  std::vector<tok::MergeRule> rules;
  rules.reserve(spec.merges.size());
  for (size_t i = 0; i < spec.merges.size(); ++i) {
    const auto& [a, b] = spec.merges[i];
    auto lookup = [&](const std::string& s, const char* what) {
      const auto it = t->str_to_id.find(s);
      if (it == t->str_to_id.end())
        raise<FormatError>("{}: merge {} ('{} {}'): {} '{}' is not in the vocabulary", spec.merges_source, i + 1, a,
                           b, what, s);
      return it->second;
    };
    rules.push_back({lookup(a, "token"), lookup(b, "token"), lookup(a + b, "merged token")});
  }
  if (spec.sentencepiece) {
    t->bpe = tok::BpeModel(char_symbols(*t, spec), rules,
                           spec.ignore_merges ? vocab_words(spec) : tok::BpeModel::WholeWords{});
    t->metaspace = spec.sentencepiece->metaspace;
    t->strip_leading_space = spec.sentencepiece->strip_leading_space;
  } else {
    t->bpe = tok::BpeModel(byte_ids, rules, spec.ignore_merges ? whole_words(spec) : tok::BpeModel::WholeWords{});
  }

  const std::string& added_src = spec.config_source.empty() ? spec.vocab_source : spec.config_source;
  // Each listed token is blamed on the file that lists it (tokenizer.json's
  // added_tokens or tokenizer_config.json's added_tokens_decoder).
  for (const auto& a : spec.added)
    add_special(*t, a.content, a.id, a.source.empty() ? added_src : a.source, a.special, a.normalized);
  // Ids given up for the vocabulary's (add_special) leave no unassigned entries at the end of the tables.
  while (t->kind.back() == kUnassigned) {
    t->kind.pop_back();
    t->token_str.pop_back();
    t->token_bytes.pop_back();
  }
  if (const auto it = t->str_to_id.find(kEndOfText); it != t->str_to_id.end())
    add_special(*t, std::string(kEndOfText), it->second, spec.vocab_source);
  reject_merges_missing(*t, spec);
  t->bos = named_token(*t, spec.bos_token, spec.config_source, "bos_token");
  t->eos = named_token(*t, spec.eos_token, spec.config_source, "eos_token");
  std::vector<std::string> warned;  // the bos_token / eos_token named_token warned about
  for (const auto& [id, name] : {std::pair{t->bos, &spec.bos_token}, std::pair{t->eos, &spec.eos_token}})
    if (id)
      add_special(*t, t->token_str[size_t(*id)], *id, added_src);
    else if (*name)
      warned.push_back(**name);
  t->prefix = special_ids(*t, spec.prefix_tokens, spec.prefix_source, "before", warned);
  t->suffix = special_ids(*t, spec.suffix_tokens, spec.suffix_source, "after", warned);
  sort_added_matches(*t);
  return t;
}

}  // namespace kq
