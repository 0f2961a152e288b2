#include "tokenizer/tokenizer_files.hpp"

#include <algorithm>
#include <string_view>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/json_strict.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"
#include "tokenizer/tokenizer_json_parts.hpp"

namespace kq::tok {
namespace {

using json = nlohmann::json;
constexpr uint64_t kMaxFileBytes = uint64_t(1) << 30;

/// Reads and parses a tokenizer JSON file (tokenizer.json, tokenizer_config.json,
/// vocab.json) as io::load_json_file does (its errors), except that a UTF-8
/// byte-order mark (EF BB BF) before the JSON is a FormatError naming the
/// file (io::load_hf_json_file: Hugging Face refuses it).
json load_tokenizer_json_file(const std::filesystem::path& file) { return io::load_hf_json_file(file, kMaxFileBytes); }

int32_t token_id(const json& v, const std::string& source, std::string_view what) {
  if (!v.is_number_integer()) raise<FormatError>("{}: {} has a non-integer id {}", source, what, io::json_excerpt(v));
  const auto id = v.get<int64_t>();
  if (id < 0 || id > kMaxTokenId)
    raise<FormatError>("{}: {} has id {} outside [0, {}]", source, what, id, kMaxTokenId);
  return int32_t(id);
}

void read_vocab_object(const json& v, const std::string& source, TokenizerSpec& spec) {
  if (!v.is_object()) raise<FormatError>("{}: vocabulary must be a JSON object {{token: id}}", source);
  spec.vocab.reserve(v.size());
  for (const auto& [tok, id] : v.items()) spec.vocab.emplace_back(tok, token_id(id, source, "token '" + tok + "'"));
}

/// Splits "a b" into its two tokens; false unless there is exactly one space
/// with non-empty tokens on both sides.
bool split_merge(std::string_view line, std::pair<std::string, std::string>& out) {
  const size_t sp = line.find(' ');
  if (sp == std::string_view::npos || sp == 0 || sp + 1 >= line.size()) return false;
  if (line.find(' ', sp + 1) != std::string_view::npos) return false;
  out = {std::string(line.substr(0, sp)), std::string(line.substr(sp + 1))};
  return true;
}

/// The text of a special-token field of tokenizer_config.json: a string, an
/// object {"content": ...} (AddedToken), or null/absent.
std::optional<std::string> token_content(const json& cfg, const char* key, const std::string& source) {
  const auto it = cfg.find(key);
  if (it == cfg.end() || it->is_null()) return std::nullopt;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_object()) {
    const auto c = it->find("content");
    if (c != it->end() && c->is_string()) return c->get<std::string>();
  }
  raise<FormatError>("{}: '{}' must be a string or an object with a string \"content\"", source, key);
}


bool is_null_or_empty(const json& obj, const char* key) {
  const auto it = obj.find(key);
  return it == obj.end() || it->is_null() || (it->is_string() && it->get_ref<const std::string&>().empty());
}

void check_supported(const json& root, const std::string& source) {
  const json& model = member(root, "model", source, "the top level");
  if (!model.is_object()) raise<FormatError>("{}: \"model\" must be an object", source);
  if (const auto t = model.find("type"); t != model.end() && *t != "BPE")
    raise<Unsupported>("{}: model type {} is not supported (only BPE)", source, io::json_excerpt(*t));
  if (!is_null_or_empty(model, "continuing_subword_prefix") || !is_null_or_empty(model, "end_of_word_suffix"))
    raise<Unsupported>("{}: BPE subword prefixes/suffixes are not supported", source);
  if (const auto d = model.find("dropout");
      d != model.end() && !d->is_null() && !(d->is_number() && d->get<double>() == 0.0))
    raise<Unsupported>("{}: BPE dropout is not supported", source);
}

/// The special token `name` of a TemplateProcessing's template as its
/// "special_tokens" (`map`, null when there is none) gives it: its "ids" and
/// "tokens". Throws FormatError naming the file and the token when `name` is
/// not in the map (Hugging Face's tokenizers load that, then fail to encode a
/// text with special tokens: "Missing SpecialToken with id") or its entry has
/// no "ids" array of ids in [0, kMaxTokenId] or no "tokens" array of strings
/// (Hugging Face refuses that at load).
AroundTextToken template_token(const json* map, const std::string& name, const std::string& source) {
  const std::string quoted = fmt::format("'{}'", io::text_excerpt(name, 40));
  if (!map || map->find(name) == map->end())
    raise<FormatError>("{}: the post_processor's TemplateProcessing adds the special token {} to every text, but its "
                       "\"special_tokens\" has no entry {} (Hugging Face's tokenizers cannot encode a text with it: "
                       "\"Missing SpecialToken with id\")",
                       source, quoted, quoted);
  const json& e = map->at(name);
  const auto ids = e.find("ids"), tokens = e.find("tokens");  // (end() when e is not an object)
  if (ids == e.end() || !ids->is_array() || tokens == e.end() || !tokens->is_array())
    raise<FormatError>("{}: the post_processor's special_tokens entry {} needs an \"ids\" and a \"tokens\" array, "
                       "got {}",
                       source, quoted, io::json_excerpt(e));
  AroundTextToken t{name, std::vector<int32_t>{}, {}, "special_tokens"};
  for (size_t i = 0; i < ids->size(); ++i)
    t.ids->push_back(token_id((*ids)[i], source, fmt::format("the post_processor's special token {} (ids[{}])",
                                                             quoted, i)));
  for (const json& s : *tokens) {
    if (!s.is_string())
      raise<FormatError>("{}: the post_processor's special_tokens entry {} has a \"tokens\" element {} that is not "
                         "a string",
                         source, quoted, io::json_excerpt(s));
    t.tokens.push_back(s.get<std::string>());
  }
  return t;
}

/// The token `key` ("cls" / "sep") of a RobertaProcessing / BertProcessing
/// post_processor `p` (of type `type`): its [token, id] pair, whose id Hugging
/// Face adds whatever the vocabulary gives the token. Throws FormatError
/// naming the file, the type and the key when the pair is missing or is not a
/// string and an id in [0, kMaxTokenId] (Hugging Face refuses that at load).
AroundTextToken cls_sep_token(const json& p, const char* key, const std::string& type, const std::string& source) {
  const auto t = p.find(key);
  if (t == p.end() || !t->is_array() || t->size() != 2 || !(*t)[0].is_string())
    raise<FormatError>("{}: the post_processor's {} needs \"{}\" as a [token, id] pair, got {} (Hugging Face's "
                       "tokenizers refuse it)",
                       source, type, key, t == p.end() ? std::string("none") : io::json_excerpt(*t));
  const std::string content = (*t)[0].get<std::string>();
  const int32_t id = token_id((*t)[1], source, fmt::format("the post_processor's {} \"{}\" token '{}'", type, key,
                                                           io::text_excerpt(content, 40)));
  return {content, std::vector<int32_t>{id}, {content}, fmt::format("\"{}\"", key)};
}

/// The special tokens a post-processor adds around a single text: `before`
/// and `after` it (TemplateProcessing's "single" template, with its
/// special_tokens' ids: template_token, which throws as it says;
/// RobertaProcessing's and BertProcessing's cls / sep, with their ids:
/// cls_sep_token, which throws as it says; and those of a Sequence's
/// processors).
void added_special_tokens(const json& p, std::vector<AroundTextToken>& before, std::vector<AroundTextToken>& after,
                          const std::string& source) {
  if (!p.is_object()) return;
  const std::string type = p.value("type", std::string());
  if (type == "Sequence") {
    if (const auto ps = p.find("processors"); ps != p.end() && ps->is_array())
      for (const json& q : *ps) added_special_tokens(q, before, after, source);
  } else if (type == "TemplateProcessing") {
    const auto single = p.find("single");
    if (single == p.end() || !single->is_array()) return;
    const auto map = p.find("special_tokens");
    const json* special = map != p.end() && map->is_object() ? &*map : nullptr;
    bool seen_sequence = false;
    for (const json& piece : *single) {
      if (!piece.is_object()) continue;
      if (piece.contains("Sequence")) seen_sequence = true;
      const auto st = piece.find("SpecialToken");
      if (st != piece.end() && st->is_object() && st->contains("id") && (*st)["id"].is_string())
        (seen_sequence ? after : before).push_back(template_token(special, (*st)["id"].get<std::string>(), source));
    }
  } else if (type == "RobertaProcessing" || type == "BertProcessing") {
    for (const auto& [key, list] : {std::pair{"cls", &before}, std::pair{"sep", &after}})
      list->push_back(cls_sep_token(p, key, type, source));
  }
}

/// "'<s>', '</s>'"
std::string quoted_list(const std::vector<AroundTextToken>& tokens) {
  std::string s;
  for (const AroundTextToken& t : tokens) s += (s.empty() ? "'" : ", '") + io::text_excerpt(t.name, 40) + "'";
  return s;
}

/// Whether Python would take the JSON value as true (`if value:`): true, a
/// non-zero number, a non-empty string, array or object.
bool python_truthy(const json& v) {
  if (v.is_boolean()) return v.get<bool>();
  if (v.is_number()) return v.get<double>() != 0.0;
  if (v.is_string() || v.is_array() || v.is_object()) return !v.empty();
  return false;
}

/// What kq does with the special tokens Hugging Face adds to every encoded
/// text, for the load-time warnings (README "Tokenizer files"): by default
/// (`kq eval`, `kq bench`) and for a caller that puts those before the text
/// in front of its prompt (`kq generate`), which is warned about those after it only.
constexpr const char* kSpecialTokensUse = "kq adds none: `kq eval` and `kq bench` score the text's ids alone";
constexpr const char* kSpecialTokensUseGenerate = "`kq generate` puts none after its prompt";

/// Reads the special tokens a tokenizer.json's post_processor adds around a
/// single text into spec.prefix_tokens / suffix_tokens (warned about later, by
/// warn_tokens_around_text: tokenizer_config.json may replace them), and
/// warns (kq::warn, naming the file) about the parts of a tokenizer.json kq
/// uses that it does not apply, where Hugging Face would: a post_processor
/// that is not an object, a "truncation" setting, and (with
/// `byte_level_decoder`, byte-level BPE) a decoder that is not ByteLevel (kq
/// decodes as byte-level BPE).
void read_post_processor_and_warn(const json& root, const std::string& source, bool byte_level_decoder,
                                  TokenizerSpec& spec) {
  if (const auto p = root.find("post_processor"); p != root.end() && !p->is_null() && !p->is_object()) {
    warn(fmt::format("{}: the post_processor {} is not an object and is ignored (Hugging Face would refuse it)",
                     source, io::json_excerpt(*p)));
  } else if (p != root.end()) {
    added_special_tokens(*p, spec.prefix_tokens, spec.suffix_tokens, source);
    if (!spec.prefix_tokens.empty()) spec.prefix_source = source;
    if (!spec.suffix_tokens.empty()) spec.suffix_source = source;
    if (!spec.prefix_tokens.empty() || !spec.suffix_tokens.empty()) {
      spec.post_processor_source = source;
      spec.post_processor_type = p->value("type", std::string("?"));
    }
  }
  if (const auto t = root.find("truncation"); t != root.end() && !t->is_null())
    warn(fmt::format("{}: \"truncation\" ({}) is ignored: kq never truncates a text", source, io::json_excerpt(*t)));
  if (const auto d = root.find("decoder"); byte_level_decoder && d != root.end() && !d->is_null()) {
    bool byte_level = d->is_object() && d->value("type", std::string()) == "ByteLevel";
    if (d->is_object() && d->value("type", std::string()) == "Sequence")
      if (const auto ds = d->find("decoders"); ds != d->end() && ds->is_array() && !ds->empty()) {
        byte_level = true;
        for (const json& x : *ds)
          byte_level = byte_level && x.is_object() && x.value("type", std::string()) == "ByteLevel";
      }
    if (!byte_level)
      warn(fmt::format("{}: the decoder {} is ignored: kq decodes ids as byte-level BPE (a ByteLevel decoder)", source,
                       io::json_excerpt(*d)));
  }
}

/// `token` (from `first` on) with "special" and "normalized" of the added
/// token entry `t` (AddedTokenSpec: special when absent, normalized when
/// absent = !special). "special", "normalized", "lstrip", "rstrip" and
/// "single_word" that are present must be booleans, as Hugging Face's
/// tokenizers requires (it refuses "special": "false" or "normalized": 1):
/// else a FormatError naming token.source and `where` ("added_tokens[3]").
AddedTokenSpec added_token(const json& t, AddedTokenSpec token, const std::string& where) {
  for (const char* key : {"special", "normalized", "lstrip", "rstrip", "single_word"})
    if (const auto it = t.find(key); it != t.end() && !it->is_boolean())
      raise<FormatError>("{}: {}.{} must be true or false, not {}", token.source, where, key, io::json_excerpt(*it));
  const auto flag_of = [&](const char* key) -> std::optional<bool> {
    const auto it = t.find(key);
    return it != t.end() ? std::optional<bool>(it->get<bool>()) : std::nullopt;
  };
  token.special = flag_of("special").value_or(true);
  token.normalized = flag_of("normalized").value_or(!token.special);
  return token;
}

/// The settings of the added token `token` (read by added_token from `t`, an
/// added_tokens entry of tokenizer.json, a value of tokenizer_config.json's
/// added_tokens_decoder) that kq does not apply and Hugging Face does:
/// "lstrip", "rstrip", "single_word" true, and "normalized" when the
/// tokenizer has a normalizer other than a Unicode one (`normalizer_ignored`:
/// the SentencePiece-style Prepend / Replace, whose normalized text kq never
/// builds; a Unicode normalizer's is applied, and without a normalizer the
/// normalized text is the text). "lstrip, rstrip", empty when none.
std::string ignored_added_token_settings(const json& t, const AddedTokenSpec& token, bool normalizer_ignored) {
  const auto on = [&](const char* key) {
    const auto it = t.find(key);
    return it != t.end() && it->get<bool>();  // a boolean: added_token checked it
  };
  std::string set;
  for (const char* key : {"lstrip", "rstrip", "single_word"})
    if (on(key)) set += (set.empty() ? "" : ", ") + std::string(key);
  if (normalizer_ignored && token.normalized) set += set.empty() ? "normalized" : ", normalized";
  return set;
}

/// Warns once, naming the file, about the added tokens of `tokens` (each
/// "'content' (lstrip, rstrip)", from ignored_added_token_settings) whose
/// settings kq ignores; nothing when there are none.
void warn_ignored_added_token_settings(const std::vector<std::string>& tokens, const std::string& source) {
  if (tokens.empty()) return;
  constexpr size_t kShown = 8;
  std::string list;
  for (size_t i = 0; i < tokens.size() && i < kShown; ++i) list += (i ? ", " : "") + tokens[i];
  if (tokens.size() > kShown) list += fmt::format(" and {} more", tokens.size() - kShown);
  warn(fmt::format("{}: added token settings are ignored: {}. Hugging Face strips the spaces before (lstrip) or "
                   "after (rstrip) such a token, matches a single_word one only as a whole word and a normalized "
                   "one in the normalized text; kq matches each token's content as written in the text (a special "
                   "one only with --special-tokens) and keeps the text around it",
                   source, list));
}

/// Warns, naming the file, when byte_fallback is on, some of the 256 byte
/// tokens "<0xNN>" are not in the vocabulary and there is no unk_token: a
/// character without a token that has one of those bytes is dropped from the
/// ids (as Hugging Face's BPE drops it).
void warn_missing_byte_tokens(const TokenizerSpec& spec, const std::string& source) {
  const SentencePieceSpec& sp = *spec.sentencepiece;
  if (!sp.byte_fallback || sp.unk_token) return;
  std::vector<bool> have(256, false);
  for (const auto& [tok, id] : spec.vocab)
    if (const auto b = byte_fallback_value(tok); b && tok == byte_fallback_token(*b)) have[*b] = true;
  const auto missing = size_t(std::count(have.begin(), have.end(), false));
  if (missing == 0) return;
  const auto first = uint8_t(std::find(have.begin(), have.end(), false) - have.begin());
  warn(fmt::format("{}: model.byte_fallback is true but {} of the 256 byte tokens are not in the vocabulary (e.g. "
                   "'{}') and there is no model.unk_token: a character without a token that has one of those bytes "
                   "is dropped from the ids, as Hugging Face drops it",
                   source, missing, byte_fallback_token(first)));
}

/// Runs f, turning nlohmann type errors (a field of the wrong JSON type) into
/// FormatError naming the file.
template <class F>
auto json_guard(const std::string& source, F&& f) {
  try {
    return f();
  } catch (const json::exception& e) {
    raise<FormatError>("{}: unexpected JSON content: {}", source, e.what());
  }
}

}  // namespace

TokenizerSpec read_gpt2_files(const std::filesystem::path& vocab_json, const std::filesystem::path& merges_txt) {
  TokenizerSpec spec;
  spec.vocab_source = vocab_json.string();
  spec.merges_source = merges_txt.string();
  read_vocab_object(load_tokenizer_json_file(vocab_json), spec.vocab_source, spec);

  const std::string text = io::read_text_file(merges_txt, kMaxFileBytes);
  // Hugging Face's slow tokenizer (GPT2Tokenizer, which AutoTokenizer converts without a tokenizer.json) reads
  // merges.txt as utf-8 text, read().split("\n")[1:-1]: it drops line 1, whatever it holds, and what follows the last
  // newline. So a line 1 that is a merge (no "#version" line) would be dropped there and used here: refused. A last
  // line without a newline is dropped as there, with a warning. A UTF-8 byte-order mark is a U+FEFF of line 1: before
  // "#version" it changes nothing and is skipped with that line; before a merge it is refused, naming the BOM.
  const bool bom = text.starts_with("\xEF\xBB\xBF");
  size_t line_no = 0;
  for (size_t pos = bom ? 3 : 0; pos < text.size();) {
    size_t end = text.find('\n', pos);
    const bool unterminated = end == std::string::npos;
    if (unterminated) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    pos = end + 1;
    ++line_no;
    // Python's text mode reads a lone '\r' as a newline too: a last line ending with one is not dropped there.
    const bool dropped_last = unterminated && !line.ends_with('\r');
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    if (line_no == 1 && !line.empty() && !line.starts_with("#version")) {
      if (bom)
        raise<FormatError>("{}: starts with a UTF-8 byte-order mark (bytes EF BB BF) before a line 1 '{}' that is not "
                           "the \"#version\" line (Hugging Face's slow tokenizer skips line 1: that merge would be "
                           "dropped); remove those 3 bytes",
                           spec.merges_source, io::text_excerpt(line, 40));
      raise<FormatError>("{}: line 1 '{}' is not the \"#version\" line: Hugging Face's slow tokenizer skips line 1 of "
                         "merges.txt whatever it holds, so it would drop that merge; add a '#version: 0.2' line before "
                         "it (or make line 1 that line, if it is no merge)",
                         spec.merges_source, io::text_excerpt(line, 40));
    }
    if (line.empty() || line_no == 1) continue;
    if (dropped_last) {
      warn(fmt::format("{}: the last line ({}, '{}') does not end with a newline; Hugging Face's slow tokenizer drops "
                       "it (it reads merges.txt as read().split(\"\\n\")[1:-1]), so kq drops it too; end the file "
                       "with a newline to use that merge",
                       spec.merges_source, line_no, io::text_excerpt(line, 40)));
      continue;
    }
    std::pair<std::string, std::string> m;
    if (!split_merge(line, m))
      raise<FormatError>("{}: line {}: expected two tokens separated by one space, got '{}'", spec.merges_source,
                         line_no, line.substr(0, 100));
    spec.merges.push_back(std::move(m));
  }
  return spec;
}

namespace {

TokenizerSpec read_tokenizer_json_unguarded(const std::filesystem::path& file) {
  TokenizerSpec spec;
  spec.vocab_source = spec.merges_source = file.string();
  const std::string& src = spec.vocab_source;
  const json root = load_tokenizer_json_file(file);
  if (!root.is_object()) raise<FormatError>("{}: top level must be a JSON object", src);
  check_supported(root, src);
  check_component_types(root, src);
  const json& model = root.at("model");
  spec.sentencepiece = sentencepiece_layout(root, src);
  if (!spec.sentencepiece) {
    if (flag(model, "byte_fallback", false, src, "model"))
      raise<Unsupported>("{}: BPE byte_fallback is not supported with a byte-level pre_tokenizer (only in "
                         "SentencePiece-style tokenizers: a Metaspace pre_tokenizer or a Prepend/Replace normalizer)",
                         src);
    spec.normalization = byte_level_normalization(root, src);
    spec.pretokenizer_regex = pretokenizer_regex(root, src);
    spec.pretokenizer_source = src;
  }
  read_post_processor_and_warn(root, src, /*byte_level_decoder=*/!spec.sentencepiece, spec);
  if (spec.sentencepiece) spec.sentencepiece->strip_leading_space = sentencepiece_strip(root, *spec.sentencepiece, src);
  if (const auto im = model.find("ignore_merges"); im != model.end() && !im->is_null()) {
    if (!im->is_boolean())
      raise<FormatError>("{}: model.ignore_merges must be true or false, got {}", src, io::json_excerpt(*im));
    spec.ignore_merges = im->get<bool>();
  }
  read_vocab_object(member(model, "vocab", src, "\"model\""), src, spec);

  const json& merges = member(model, "merges", src, "\"model\"");
  if (!merges.is_array()) raise<FormatError>("{}: model.merges must be an array", src);
  spec.merges.reserve(merges.size());
  for (size_t i = 0; i < merges.size(); ++i) {
    const json& m = merges[i];
    std::pair<std::string, std::string> pair;
    if (m.is_string()) {
      if (!split_merge(m.get_ref<const std::string&>(), pair))
        raise<FormatError>("{}: model.merges[{}]: expected \"a b\", got {}", src, i, io::json_excerpt(m));
    } else if (m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string()) {
      pair = {m[0].get<std::string>(), m[1].get<std::string>()};
    } else {
      raise<FormatError>("{}: model.merges[{}]: expected \"a b\" or [\"a\", \"b\"], got {}", src, i,
                         io::json_excerpt(m));
    }
    spec.merges.push_back(std::move(pair));
  }

  if (spec.sentencepiece) warn_missing_byte_tokens(spec, src);

  if (const auto at = root.find("added_tokens"); at != root.end() && !at->is_null()) {
    if (!at->is_array()) raise<FormatError>("{}: added_tokens must be an array", src);
    // The Unicode normalizer's text is where kq matches "normalized" tokens; a SentencePiece-style one's is not.
    const bool normalizer = spec.sentencepiece && has_normalizer(root, src);
    std::vector<std::string> ignored;  // tokens with settings kq does not apply
    for (size_t i = 0; i < at->size(); ++i) {
      const json& t = (*at)[i];
      const auto c = t.is_object() ? t.find("content") : t.end();
      if (!t.is_object() || c == t.end() || !c->is_string() || !t.contains("id"))
        raise<FormatError>("{}: added_tokens[{}] needs a string \"content\" and an \"id\"", src, i);
      const std::string where = fmt::format("added_tokens[{}]", i);
      spec.added.push_back(added_token(t, {c->get<std::string>(), token_id(t.at("id"), src, where), src}, where));
      if (const std::string set = ignored_added_token_settings(t, spec.added.back(), normalizer); !set.empty())
        ignored.push_back(fmt::format("'{}' ({})", io::text_excerpt(c->get_ref<const std::string&>(), 40), set));
    }
    warn_ignored_added_token_settings(ignored, src);
  }
  return spec;
}

void read_tokenizer_config_unguarded(const std::filesystem::path& file, TokenizerSpec& spec, bool with_added) {
  const std::string src = file.string();
  spec.config_source = src;
  const json cfg = load_tokenizer_json_file(file);
  if (!cfg.is_object()) raise<FormatError>("{}: top level must be a JSON object", src);
  if (auto b = token_content(cfg, "bos_token", src)) spec.bos_token = std::move(b);
  if (auto e = token_content(cfg, "eos_token", src)) spec.eos_token = std::move(e);
  // Hugging Face's slow tokenizers (and LlamaTokenizerFast, which rewrites its post_processor
  // from them) add these tokens to every encoded text when the value is true as Python tests
  // it: "true", 1 (or even "false", a non-empty string) count. Given, the value replaces the
  // post_processor's tokens before / after the text (prefix_tokens / suffix_tokens).
  for (const auto& [key, token, list, list_source, setting] :
       {std::tuple{"add_bos_token", &spec.bos_token, &spec.prefix_tokens, &spec.prefix_source, &spec.prefix_setting},
        std::tuple{"add_eos_token", &spec.eos_token, &spec.suffix_tokens, &spec.suffix_source,
                   &spec.suffix_setting}}) {
    const auto a = cfg.find(key);
    if (a == cfg.end() || a->is_null()) continue;
    list->clear();
    *list_source = src;
    setting->clear();
    if (!python_truthy(*a)) continue;
    // "bos_token": null is no token, not the default one: transformers refuses the pair at load
    // (LlamaTokenizerFast.update_post_processor: "add_bos_token = True but bos_token = None").
    const char* token_key = token == &spec.bos_token ? "bos_token" : "eos_token";
    if (const auto t = cfg.find(token_key); t != cfg.end() && t->is_null())
      raise<FormatError>("{}: \"{}\": {} but \"{}\" is null: there is no token to add (Hugging Face refuses this "
                         "too: \"{} = True but {} = None\"); set \"{}\" to the token, or \"{}\" to false",
                         src, key, io::json_excerpt(*a), token_key, key, token_key, token_key, key);
    list->push_back({token->value_or("<|endoftext|>")});
    // Warned about once the tokenizer is built (warn_tokens_around_text): only when the token resolves.
    *setting = fmt::format("\"{}\": {}", key, io::json_excerpt(*a));
  }
  // The GPT-2 (slow) tokenizer puts a space before the text; kq encodes the text as it is.
  if (const auto a = cfg.find("add_prefix_space"); a != cfg.end() && python_truthy(*a))
    warn(fmt::format("{}: \"add_prefix_space\": {} is ignored: Hugging Face's GPT-2 tokenizer puts a space before "
                     "the text, kq encodes the text as it is (the first word's ids differ)",
                     src, io::json_excerpt(*a)));
  if (!with_added) return;
  const auto atd = cfg.find("added_tokens_decoder");
  if (atd == cfg.end() || atd->is_null()) return;
  if (!atd->is_object()) raise<FormatError>("{}: added_tokens_decoder must be an object", src);
  std::vector<std::string> ignored;  // tokens with settings kq does not apply
  for (const auto& [key, t] : atd->items()) {
    int64_t id = -1;
    try {
      size_t used = 0;
      id = std::stoll(key, &used);
      if (used != key.size()) id = -1;
    } catch (const std::exception&) {
      id = -1;
    }
    if (id < 0 || id > kMaxTokenId)
      raise<FormatError>("{}: added_tokens_decoder key '{}' is not a token id in [0, {}]", src, key, kMaxTokenId);
    const auto c = t.is_object() ? t.find("content") : t.end();
    if (!t.is_object() || c == t.end() || !c->is_string())
      raise<FormatError>("{}: added_tokens_decoder['{}'] needs a string \"content\"", src, key);
    spec.added.push_back(
        added_token(t, {c->get<std::string>(), int32_t(id), src}, fmt::format("added_tokens_decoder['{}']", key)));
    // The vocab.json + merges.txt route has no normalizer.
    if (const std::string set = ignored_added_token_settings(t, spec.added.back(), /*has_normalizer=*/false);
        !set.empty())
      ignored.push_back(fmt::format("'{}' ({})", io::text_excerpt(c->get_ref<const std::string&>(), 40), set));
  }
  warn_ignored_added_token_settings(ignored, src);
}

}  // namespace

void warn_tokens_around_text(const TokenizerSpec& spec, bool before_added, bool after_added,
                             bool prefix_before_prompt) {
  const bool warn_before = before_added && !prefix_before_prompt;
  const char* use = prefix_before_prompt ? kSpecialTokensUseGenerate : kSpecialTokensUse;
  // tokenizer_config.json's add_bos_token / add_eos_token, when the token resolved.
  for (const auto& [setting, what, tokens, source, wanted] :
       {std::tuple{&spec.prefix_setting, "BOS", &spec.prefix_tokens, &spec.prefix_source, warn_before},
        std::tuple{&spec.suffix_setting, "EOS", &spec.suffix_tokens, &spec.suffix_source, after_added}})
    if (wanted && !setting->empty() && !tokens->empty())
      warn(fmt::format("{}: {}: Hugging Face adds the {} token '{}' to every encoded text; {}", *source, *setting,
                       what, io::text_excerpt(tokens->front().name, 40), use));
  if (spec.post_processor_source.empty()) return;
  // A part tokenizer_config.json's add_bos_token / add_eos_token replaced names that file as its source. A template
  // token whose special_tokens entry has "ids": [] adds nothing (in Hugging Face and kq): not named.
  const auto left = [&](const std::vector<AroundTextToken>& tokens, const std::string& source, bool wanted) {
    std::vector<AroundTextToken> adding;
    if (wanted && source == spec.post_processor_source)
      for (const AroundTextToken& t : tokens)
        if (!t.ids || !t.ids->empty()) adding.push_back(t);
    return adding;
  };
  const std::vector<AroundTextToken> before = left(spec.prefix_tokens, spec.prefix_source, warn_before);
  const std::vector<AroundTextToken> after = left(spec.suffix_tokens, spec.suffix_source, after_added);
  if (before.empty() && after.empty()) return;
  warn(fmt::format("{}: the post_processor ({}) adds special tokens to every encoded text ({}{}{}), as Hugging Face "
                   "tokenizers apply it; {}",
                   spec.post_processor_source, io::text_excerpt(spec.post_processor_type, 40),
                   before.empty() ? "" : quoted_list(before) + " before it",
                   !before.empty() && !after.empty() ? ", " : "",
                   after.empty() ? "" : quoted_list(after) + " after it", use));
}

TokenizerSpec read_tokenizer_json(const std::filesystem::path& file) {
  return json_guard(file.string(), [&] { return read_tokenizer_json_unguarded(file); });
}

void read_tokenizer_config(const std::filesystem::path& file, TokenizerSpec& spec, bool with_added) {
  json_guard(file.string(), [&] { read_tokenizer_config_unguarded(file, spec, with_added); });
}

}  // namespace kq::tok
