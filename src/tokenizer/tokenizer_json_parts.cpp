// tokenizer.json's normalizer, pre_tokenizer and decoder: see tokenizer_json_parts.hpp.
#include "tokenizer/tokenizer_json_parts.hpp"

#include <utility>
#include <vector>

#include "io/json_strict.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"
#include "tokenizer/metaspace.hpp"
#include "tokenizer/normalizer.hpp"
#include "tokenizer/pretokenizer.hpp"

namespace kq::tok {

using json = nlohmann::json;

const json& member(const json& obj, const char* key, const std::string& source, std::string_view where) {
  const auto it = obj.find(key);
  if (it == obj.end()) raise<FormatError>("{}: missing \"{}\" in {}", source, key, where);
  return *it;
}

std::string type_of(const json& p) { return p.is_object() ? p.value("type", std::string()) : std::string(); }

bool flag(const json& obj, const char* key, bool absent, const std::string& source, std::string_view where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return absent;
  if (!it->is_boolean())
    raise<FormatError>("{}: {} \"{}\" must be true or false, got {}", source, where, key, io::json_excerpt(*it));
  return it->get<bool>();
}

namespace {

/// Whether `x` has a string member `key` equal to `value`.
bool has_member(const json& x, const char* key, std::string_view value) {
  const auto it = x.find(key);
  return it != x.end() && it->is_string() && it->get_ref<const std::string&>() == value;
}

/// A Replace (normalizer or decoder) of the String `from` by `to`.
bool is_replace(const json& x, std::string_view from, std::string_view to) {
  if (type_of(x) != "Replace" || !has_member(x, "content", to)) return false;
  const auto p = x.find("pattern");
  return p != x.end() && p->is_object() && p->size() == 1 && has_member(*p, "String", from);
}

/// Every normalizer kq runs, for the message refusing another.
constexpr const char* kSupportedNormalizers =
    "supported: NFC, NFD, NFKC or NFKD, alone or in a Sequence of them, with a byte-level pre_tokenizer; "
    "SentencePiece-style, with no pre_tokenizer, Sequence [Prepend \"\u2581\", Replace \" \" -> \"\u2581\"] or that "
    "Replace alone; or none, an empty Sequence";

/// "Sequence [Prepend, Sequence [Replace]]" or "Lowercase": the types of a normalizer, for messages.
std::string normalizer_types(const json& n) {
  if (type_of(n) != "Sequence" || !n.contains("normalizers") || !n["normalizers"].is_array())
    return type_of(n).empty() ? io::json_excerpt(n, 40) : io::text_excerpt(type_of(n), 40);
  std::string types;
  for (const json& x : n["normalizers"]) types += (types.empty() ? "" : ", ") + normalizer_types(x);
  return "Sequence [" + types + "]";
}

/// Throws FormatError naming the file and the field when the component `x` (at `where` in the file, e.g.
/// "normalizer.normalizers[1]"; a `component`, whose Sequence lists its members in `members`) or one of its
/// Sequence's members, at any depth, has a "type" that is not a string (Hugging Face refuses the file).
void check_type_strings(const json& x, const std::string& where, const char* component, const char* members,
                        const std::string& source) {
  if (!x.is_object()) return;
  if (const auto t = x.find("type"); t != x.end() && !t->is_string())
    raise<FormatError>("{}: {}.type must be a string (the {}'s name), got {}", source, where, component,
                       io::json_excerpt(*t, 40));
  if (const auto list = x.find(members); list != x.end() && list->is_array())
    for (size_t i = 0; i < list->size(); ++i)
      check_type_strings((*list)[i], fmt::format("{}.{}[{}]", where, members, i), component, members, source);
}

/// Appends the normalizers `n` (at `where` in the file, e.g. "normalizer.normalizers[1]") runs, in order, to
/// `parts`: n itself, or the members of a Sequence with a nested Sequence's in its place (Hugging Face runs a
/// Sequence's members in order, so nesting changes nothing and an empty Sequence is no normalizer). Throws
/// FormatError naming the file and the field for a Sequence without a "normalizers" array.
void flatten_normalizer(const json& n, const std::string& where, const std::string& source,
                        std::vector<const json*>& parts) {
  if (type_of(n) != "Sequence") {
    parts.push_back(&n);
    return;
  }
  const json& list = member(n, "normalizers", source, "the Sequence " + where);
  if (!list.is_array()) raise<FormatError>("{}: {}.normalizers must be an array", source, where);
  for (size_t i = 0; i < list.size(); ++i)
    flatten_normalizer(list[i], fmt::format("{}.normalizers[{}]", where, i), source, parts);
}

/// The normalizers tokenizer.json's "normalizer" runs, in order (flatten_normalizer); none when it is absent,
/// null or an empty Sequence.
std::vector<const json*> normalizer_parts(const json& root, const std::string& source) {
  std::vector<const json*> parts;
  if (const auto n = root.find("normalizer"); n != root.end() && !n->is_null())
    flatten_normalizer(*n, "normalizer", source, parts);
  return parts;
}

/// The forms of normalizer parts that are Unicode normalizations only (NFC,
/// NFD, NFKC or NFKD each); nullopt when any part is another normalizer.
std::optional<std::vector<UnicodeForm>> unicode_forms(const std::vector<const json*>& parts) {
  std::vector<UnicodeForm> forms;
  for (const json* x : parts) {
    const auto form = unicode_form(type_of(*x));
    if (!form) return std::nullopt;
    forms.push_back(*form);
  }
  return forms;
}

/// The "▁" rule of a SentencePiece-style normalizer `n` made of `parts`
/// (normalizer_parts): [Prepend "▁", Replace " " -> "▁"] (the legacy Llama-2
/// conversion; Prepend, to a non-empty text only, is left out with
/// add_prefix_space false), or that Replace alone. Throws Unsupported naming
/// the file, the normalizer's parts and every normalizer kq runs otherwise.
MetaspaceRule normalizer_rule(const json& n, const std::vector<const json*>& parts, const std::string& source) {
  MetaspaceRule rule;
  size_t i = 0;
  if (parts.size() == 2 && type_of(*parts[0]) == "Prepend" && has_member(*parts[0], "prepend", kMetaspace)) {
    rule.prepend = MetaspaceRule::Prepend::kEverySection;
    i = 1;
  }
  if (parts.size() != i + 1 || !is_replace(*parts[i], " ", kMetaspace))
    raise<Unsupported>("{}: a normalizer ({}) is not supported ({})", source, normalizer_types(n),
                       kSupportedNormalizers);
  return rule;
}

/// The "▁" rule of a Metaspace pre_tokenizer: replacement "▁", split false
/// (the text is one word; Hugging Face's default is true), prepend_scheme
/// "first", "always" or "never" (default "always"; add_prefix_space false,
/// from older files, must come with "never", as Hugging Face requires). A
/// section that starts with "▁" (or " ") gets none prepended.
MetaspaceRule metaspace_rule(const json& p, const std::string& source) {
  const std::string where = "the Metaspace pre_tokenizer";
  if (const auto r = p.find("replacement"); r != p.end() && !(r->is_string() && *r == kMetaspace))
    raise<Unsupported>("{}: {} with replacement {} is not supported (only \"\u2581\")", source, where,
                       io::json_excerpt(*r, 40));
  if (flag(p, "split", true, source, where))
    raise<Unsupported>("{}: {} with split=true (the default) is not supported (only split false: the whole text is "
                       "one word, as in Llama-2)",
                       source, where);
  MetaspaceRule rule;
  rule.unless_leading_metaspace = true;
  const auto scheme = p.find("prepend_scheme");
  const bool prefix_space = flag(p, "add_prefix_space", true, source, where);
  if (!prefix_space && (scheme == p.end() || scheme->is_null() || *scheme != "never"))
    raise<FormatError>("{}: {}'s add_prefix_space false does not match its prepend_scheme {} (it must be \"never\")",
                       source, where,
                       scheme == p.end() ? std::string("(absent: \"always\")") : io::json_excerpt(*scheme));
  if (scheme == p.end() || scheme->is_null()) {
    rule.prepend = MetaspaceRule::Prepend::kEverySection;
  } else if (*scheme == "first") {
    rule.prepend = MetaspaceRule::Prepend::kFirstSection;
  } else if (*scheme == "always") {
    rule.prepend = MetaspaceRule::Prepend::kEverySection;
  } else if (*scheme == "never") {
    rule.prepend = MetaspaceRule::Prepend::kNever;
  } else {
    raise<FormatError>("{}: {}'s prepend_scheme must be \"first\", \"always\" or \"never\", got {}", source, where,
                       io::json_excerpt(*scheme, 40));
  }
  return rule;
}

/// Checks a ByteLevel pre-tokenizer: no prefix space, and use_regex as
/// `regex` wants it (true alone: the GPT-2 regex splits; false after a Split,
/// which has split the text already).
void check_byte_level(const json& p, bool regex, const std::string& source) {
  if (p.value("add_prefix_space", false))
    raise<Unsupported>("{}: ByteLevel add_prefix_space=true is not supported", source);
  const bool use_regex = p.value("use_regex", true);
  if (regex && !use_regex) raise<Unsupported>("{}: ByteLevel use_regex=false is not supported", source);
  if (!regex && use_regex)
    raise<Unsupported>("{}: ByteLevel use_regex=true after a Split is not supported (the GPT-2 regex would split "
                       "each Split piece again)",
                       source);
}

/// The regex of a Split pre-tokenizer with behavior "Isolated" (matches and
/// the text between them are pieces) and invert false: its {"Regex": ...}
/// pattern as is, or its {"String": ...} matched literally (Hugging Face
/// compiles the escaped string).
std::string split_regex(const json& p, const std::string& source) {
  const json& behavior = member(p, "behavior", source, "the Split pre_tokenizer");
  if (behavior != "Isolated")
    raise<Unsupported>("{}: Split pre_tokenizer behavior {} is not supported (only \"Isolated\")", source,
                       io::json_excerpt(behavior));
  if (const auto inv = p.find("invert"); inv != p.end() && !inv->is_null()) {
    if (!inv->is_boolean())
      raise<FormatError>("{}: Split \"invert\" must be true or false, got {}", source, io::json_excerpt(*inv));
    if (inv->get<bool>()) raise<Unsupported>("{}: Split pre_tokenizer with invert=true is not supported", source);
  }
  const json& pattern = member(p, "pattern", source, "the Split pre_tokenizer");
  if (pattern.is_object() && pattern.size() == 1) {
    if (const auto r = pattern.find("Regex"); r != pattern.end() && r->is_string()) return r->get<std::string>();
    if (const auto s = pattern.find("String"); s != pattern.end() && s->is_string())
      return literal_pattern(s->get_ref<const std::string&>());
  }
  raise<FormatError>("{}: Split \"pattern\" must be {{\"Regex\": \"...\"}} or {{\"String\": \"...\"}}, got {}",
                     source, io::json_excerpt(pattern));
}

}  // namespace

void check_component_types(const json& root, const std::string& source) {
  for (const auto& [component, members] :
       {std::pair{"normalizer", "normalizers"}, std::pair{"pre_tokenizer", "pretokenizers"},
        std::pair{"post_processor", "processors"}, std::pair{"decoder", "decoders"}})
    if (const auto it = root.find(component); it != root.end())
      check_type_strings(*it, component, component, members, source);
}

bool has_normalizer(const json& root, const std::string& source) { return !normalizer_parts(root, source).empty(); }

/// The SentencePiece-style description of a tokenizer.json that has a
/// normalizer (normalizer_parts: an empty Sequence is none) other than a
/// Unicode one (unicode_forms) or a Metaspace
/// pre_tokenizer (BPE from characters: no ByteLevel), or nullopt when it has
/// neither (byte-level BPE, checked by byte_level_normalization and
/// pretokenizer_regex). Throws Unsupported naming the file and the part for a
/// normalizer other than normalizer_rule's, a pre_tokenizer beside it, or a
/// Metaspace other than metaspace_rule's; FormatError for wrongly typed model
/// fields (byte_fallback, fuse_unk, unk_token).
std::optional<SentencePieceSpec> sentencepiece_layout(const json& root, const std::string& source) {
  const auto n = root.find("normalizer");
  const auto p = root.find("pre_tokenizer");
  const std::vector<const json*> parts = normalizer_parts(root, source);
  const bool has_normalizer = !parts.empty(), has_pre = p != root.end() && !p->is_null();
  // A Unicode normalizer goes with byte-level BPE (Qwen2: NFC); with a Metaspace it is refused below.
  const bool unicode_normalizer = has_normalizer && unicode_forms(parts);
  if ((!has_normalizer || unicode_normalizer) && !(has_pre && type_of(*p) == "Metaspace")) return std::nullopt;
  SentencePieceSpec sp;
  if (has_normalizer) {
    sp.metaspace = normalizer_rule(*n, parts, source);
    if (has_pre)
      raise<Unsupported>("{}: the pre_tokenizer {} with the normalizer ({}) is not supported (only none: the whole "
                         "text is one word)",
                         source, io::json_excerpt(*p, 80), normalizer_types(*n));
  } else {
    sp.metaspace = metaspace_rule(*p, source);
  }
  const json& model = root.at("model");
  sp.byte_fallback = flag(model, "byte_fallback", false, source, "model");
  sp.fuse_unk = flag(model, "fuse_unk", false, source, "model");
  if (const auto u = model.find("unk_token"); u != model.end() && !u->is_null()) {
    if (!u->is_string())
      raise<FormatError>("{}: model.unk_token must be a string, got {}", source, io::json_excerpt(*u));
    sp.unk_token = u->get<std::string>();
  }
  return sp;
}

/// The decoder of a SentencePiece-style tokenizer.json: whether it strips one
/// leading space (Sequence [Replace "▁" -> " ", ByteFallback, Fuse, Strip " "
/// start 1 stop 0], the Strip left out with add_prefix_space false; or a
/// Metaspace decoder whose prepend_scheme is not "never": Hugging Face's drops
/// every "▁" of the first token and leaves "<0xNN>" as text, kq drops one
/// leading space and decodes the byte). Any other decoder is a warning naming
/// the file: kq decodes "▁" as a space and "<0xNN>" as its byte all the same,
/// stripping a leading space when encoding prepends "▁".
bool sentencepiece_strip(const json& root, const SentencePieceSpec& sp, const std::string& source) {
  const auto d = root.find("decoder");
  if (d != root.end() && type_of(*d) == "Sequence")
    if (const auto ds = d->find("decoders"); ds != d->end() && ds->is_array() && (ds->size() == 3 || ds->size() == 4)) {
      const json& l = *ds;
      const bool strip = l.size() == 4;
      if (is_replace(l[0], kMetaspace, " ") && type_of(l[1]) == "ByteFallback" && type_of(l[2]) == "Fuse" &&
          (!strip || (type_of(l[3]) == "Strip" && has_member(l[3], "content", " ") && l[3].value("start", -1) == 1 &&
                      l[3].value("stop", -1) == 0)))
        return strip;
    }
  if (d != root.end() && type_of(*d) == "Metaspace" && has_member(*d, "replacement", kMetaspace)) {
    const auto scheme = d->find("prepend_scheme");
    if (scheme == d->end() || scheme->is_null()) return d->value("add_prefix_space", true);
    if (*scheme == "first" || *scheme == "always") return true;
    if (*scheme == "never") return false;
  }
  const bool strip = sp.metaspace.prepend != MetaspaceRule::Prepend::kNever;
  warn(fmt::format("{}: the decoder {} is ignored: kq decodes SentencePiece pieces (\"\u2581\" as a space, "
                   "\"<0xNN>\" as that byte){}",
                   source, d == root.end() ? std::string("(none)") : io::json_excerpt(*d),
                   strip ? ", dropping one leading space (the \"\u2581\" encoding prepends)" : ""));
  return strip;
}

/// The Unicode normalization of a byte-level tokenizer.json: its
/// normalizer's forms (unicode_forms of normalizer_parts), none without one. Any other normalizer
/// (which sentencepiece_layout has refused already) is Unsupported naming the
/// file and the normalizer.
std::vector<UnicodeForm> byte_level_normalization(const json& root, const std::string& source) {
  auto forms = unicode_forms(normalizer_parts(root, source));
  if (!forms)
    raise<Unsupported>("{}: a normalizer ({}) is not supported with byte-level BPE ({})", source,
                       normalizer_types(root.at("normalizer")), kSupportedNormalizers);
  return std::move(*forms);
}

/// The pre-tokenization regex of tokenizer.json's pre_tokenizer: GPT-2's for
/// ByteLevel with use_regex (alone or alone in a Sequence), the Split's for a
/// Sequence [Split, ByteLevel without use_regex] (Llama-3). Throws
/// Unsupported naming the file and the offending part for anything else.
std::string pretokenizer_regex(const json& root, const std::string& source) {
  const auto p = root.find("pre_tokenizer");
  const std::string type = p == root.end() ? std::string() : type_of(*p);
  if (type == "ByteLevel") {
    check_byte_level(*p, /*regex=*/true, source);
    return std::string(kGpt2Pattern);
  }
  if (type != "Sequence")
    raise<Unsupported>("{}: only the ByteLevel pre_tokenizer (GPT-2 regex) or a Sequence of a Split and a ByteLevel "
                       "is supported, found {}",
                       source, p == root.end() ? std::string("none") : io::json_excerpt(*p));
  const json& list = member(*p, "pretokenizers", source, "the Sequence pre_tokenizer");
  if (!list.is_array())
    raise<FormatError>("{}: the Sequence pre_tokenizer's \"pretokenizers\" must be an array", source);
  std::string types;  // "Split, ByteLevel"
  for (const json& x : list) {
    const std::string t = type_of(x);
    types += (types.empty() ? "" : ", ") + (t.empty() ? io::json_excerpt(x, 40) : io::text_excerpt(t, 40));
  }
  if (list.empty() || type_of(list.back()) != "ByteLevel")
    raise<Unsupported>("{}: the pre_tokenizer Sequence [{}] is not supported: it must end with ByteLevel (byte-level "
                       "BPE)",
                       source, types);
  if (list.size() == 1) {
    check_byte_level(list[0], /*regex=*/true, source);
    return std::string(kGpt2Pattern);
  }
  if (list.size() > 2 || type_of(list[0]) != "Split")
    raise<Unsupported>("{}: the pre_tokenizer Sequence [{}] is not supported (only [Split, ByteLevel])", source, types);
  std::string regex = split_regex(list[0], source);
  check_byte_level(list[1], /*regex=*/false, source);
  return regex;
}

}  // namespace kq::tok
