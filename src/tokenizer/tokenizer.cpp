// kq::Tokenizer: loading, encode (added-token split -> GPT-2 regex, or the
// SentencePiece "▁" rule -> BPE), decode.
#include "kq/tokenizer.hpp"

#include <limits>

#include "io/atomic_dir.hpp"
#include "io/file_kind.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"
#include "tokenizer/tokenizer_impl.hpp"

namespace kq {

namespace fs = std::filesystem;

Tokenizer Tokenizer::load(const fs::path& model_dir, const LoadOptions& opts) {
  std::error_code ec;
  if (model_dir.empty()) raise<InvalidArgument>("Tokenizer::load: the model folder path is empty");
  if (!fs::is_directory(model_dir, ec)) raise<FormatError>("{}: not a directory", model_dir.string());
  io::check_not_staging_folder(model_dir);  // an unfinished kq quantize output: its tokenizer files may be missing
  const fs::path vocab = model_dir / "vocab.json", merges = model_dir / "merges.txt";
  const fs::path tj = model_dir / "tokenizer.json", cfg = model_dir / "tokenizer_config.json";
  const bool have_vocab = fs::is_regular_file(vocab, ec), have_merges = fs::is_regular_file(merges, ec);
  const bool have_json = fs::is_regular_file(tj, ec);
  tok::TokenizerSpec spec;
  bool gpt2_files = false;
  // tokenizer.json first (what transformers' AutoTokenizer loads: the fast
  // tokenizer), unless it describes a tokenizer we do not support and the
  // GPT-2 file pair is there too. A malformed tokenizer.json stays an error.
  std::string skipped;  // why tokenizer.json was not used
  if (!have_json && fs::exists(fs::symlink_status(tj, ec))) {
    // There but not a file (a directory, a dangling link, a device): say so
    // rather than fall back to vocab.json + merges.txt without a word.
    skipped = fs::is_directory(tj, ec) ? fmt::format("{} is a directory, not a file", tj.string())
              : fs::exists(tj, ec)     ? fmt::format("{} {}", tj.string(), io::why_not_regular_file(tj).value_or(""))
                                       : fmt::format("{} is a link to a missing file", tj.string());
    if (!(have_vocab && have_merges)) {
      std::string which;  // one of the pair that is there but no regular file, named for what it is
      for (const fs::path& f : {vocab, merges})
        if (const auto why = io::why_not_regular_file(f); why && *why != "not found" && which.empty())
          which = fmt::format(" ({}: {})", f.string(), *why);
      raise<FormatError>("{}; and vocab.json + merges.txt are not both there either{}", skipped, which);
    }
  }
  if (have_json) {
    try {
      spec = tok::read_tokenizer_json(tj);
      spec.description = "tokenizer.json";
    } catch (const Unsupported& e) {
      if (!(have_vocab && have_merges)) throw;
      skipped = e.what();
    }
  }
  if (spec.description.empty()) {
    if (have_vocab && have_merges) {
      spec = tok::read_gpt2_files(vocab, merges);
      spec.description = skipped.empty()
                             ? std::string("vocab.json + merges.txt")
                             : fmt::format("vocab.json + merges.txt (tokenizer.json not used: {})", skipped);
      gpt2_files = true;
      // The fallback changes which tokenizer runs: said once here, for every caller (not only
      // those that print source()).
      if (!skipped.empty())
        warn(fmt::format("{}; tokenizer.json is not used, {} + merges.txt are instead (the tokens may differ from "
                         "those tokenizer.json describes)",
                         skipped, vocab.string()));
    } else if (have_vocab || have_merges || fs::exists(fs::symlink_status(vocab, ec)) ||
               fs::exists(fs::symlink_status(merges, ec))) {
      // The one that cannot be used, named for what it is (a FIFO, a folder, a dangling link: never opened),
      // preferring one that is there over one that is absent.
      const auto why = [](const fs::path& f) { return io::why_not_regular_file(f).value_or("not found"); };
      const fs::path& bad = have_vocab ? merges : have_merges ? vocab : why(vocab) != "not found" ? vocab : merges;
      raise<FormatError>("{}: {} (needed with {}), and there is no tokenizer.json either", bad.string(), why(bad),
                         (bad == vocab ? merges : vocab).string());
    } else {
      raise<FormatError>("{}: no tokenizer files (expected tokenizer.json, or vocab.json + merges.txt)",
                         model_dir.string());
    }
  }
  // Anything at tokenizer_config.json is read, so that one that is not a regular file (a folder, a FIFO,
  // /dev/zero, a dangling link) is a FormatError naming it (io::read_text_file checks the kind before opening),
  // as for generation_config.json and as transformers fails to open it: skipping it would drop its settings
  // (add_bos_token, bos_token, added tokens) without a word. (A tokenizer.json that is no file is a warning
  // only because vocab.json + merges.txt are a whole tokenizer in its place; nothing replaces this file.)
  if (fs::symlink_status(cfg, ec).type() != fs::file_type::not_found)
    tok::read_tokenizer_config(cfg, spec, /*with_added=*/gpt2_files);
  // The slow GPT-2 tokenizer of transformers also reads added_tokens.json (tokens matched
  // before BPE); kq takes added tokens from tokenizer.json / tokenizer_config.json only.
  if (const fs::path added = model_dir / "added_tokens.json"; gpt2_files && fs::exists(added, ec))
    warn(fmt::format("{}: ignored: kq takes added tokens from tokenizer_config.json's added_tokens_decoder (with "
                     "vocab.json + merges.txt) or tokenizer.json; Hugging Face's GPT-2 tokenizer would match the "
                     "tokens listed here as single tokens",
                     added.string()));
  std::shared_ptr<const Impl> impl = Impl::build(spec);
  // What tokenizer_config.json left of the post_processor's tokens, and its own, once they resolved.
  tok::warn_tokens_around_text(spec, !impl->prefix.empty(), !impl->suffix.empty(), opts.puts_prompt_prefix);
  return Tokenizer(std::move(impl));
}

Tokenizer Tokenizer::from_files(const fs::path& vocab_json, const fs::path& merges_txt) {
  tok::TokenizerSpec spec = tok::read_gpt2_files(vocab_json, merges_txt);
  spec.description = fmt::format("{} + {}", vocab_json.filename().string(), merges_txt.filename().string());
  return Tokenizer(Impl::build(spec));
}

void Tokenizer::Impl::encode_plain(std::string_view text, std::vector<int32_t>& ids, bool at_text_start,
                                   bool normalized) const {
  if (text.empty()) return;
  if (metaspace) {  // SentencePiece-style: the section is one word, "▁" for spaces
    std::string word;
    metaspace->apply(text, at_text_start, word);
    if (cache.lookup(word, ids)) return;  // only short words are cached (WordCache::kMaxKeyBytes)
    const size_t start = ids.size();
    bpe.encode_word(word, ids);
    cache.insert(word, ids.data() + start, ids.size() - start);
    return;
  }
  std::string normal;  // the pieces below view it when there is a normalizer
  if (!normalization.empty() && !normalized) {
    normal = tok::normalize(text, normalization);
    text = normal;
  }
  std::vector<std::string_view> pieces;
  pieces.reserve(text.size() / 4 + 1);
  pre.split(text, pieces);
  for (const std::string_view piece : pieces) {
    if (cache.lookup(piece, ids)) continue;
    const size_t start = ids.size();
    bpe.encode_word(piece, ids);
    cache.insert(piece, ids.data() + start, ids.size() - start);
  }
}

void Tokenizer::Impl::check_id(int32_t id) const {
  if (id < 0 || size_t(id) >= kind.size())
    raise<InvalidArgument>("token id {} is not in the vocabulary: the tokenizer ({}) has {} ids (0..{})", id, source,
                           kind.size(), kind.size() - 1);
  if (kind[size_t(id)] == kUnassigned)
    raise<InvalidArgument>("token id {} is not assigned to any token by the tokenizer ({}, ids 0..{})", id, source,
                           kind.size() - 1);
}

const Tokenizer::Impl& Tokenizer::impl() const {
  if (!impl_)
    raise<InvalidArgument>("Tokenizer: moved-from tokenizer (it has no tables); load one with Tokenizer::load() "
                           "or assign a loaded one to it");
  return *impl_;
}

const std::string* Tokenizer::bytes_of(int32_t id) const {
  const Impl& t = impl();
  if (id >= 0 && size_t(id) < t.kind.size() && t.kind[size_t(id)] != Impl::kUnassigned)
    return &t.token_bytes[size_t(id)];
  if (model_vocab_ == 0) t.check_id(id);  // not bound to a model: every unassigned id is an error
  if (id < 0 || id >= model_vocab_)
    raise<InvalidArgument>(
        "token id {} is not in the vocabulary: the model has {} ids (0..{}), its tokenizer ({}) has {}", id,
        model_vocab_, model_vocab_ - 1, t.source, t.kind.size());
  return nullptr;  // a padding id of the model's vocabulary
}

namespace {

/// Calls section(part, at_start) for each part of `text` between the matches of
/// `tokens` (Impl::match_raw / match_normalized; a special one only with
/// `allow_special`) and appends each match's id to `ids`, in text order. The
/// leftmost match wins, the longest among those at one position (the lists
/// are sorted longest first), as Hugging Face's added-token matching does.
/// `at_start`: whether a part is at the start of the text (`text_start`: the
/// text itself is, and the part begins it).
template <class Section>
void split_on_added(std::string_view text, const std::vector<Tokenizer::Impl::AddedMatch>& tokens, bool allow_special,
                    bool text_start, std::vector<int32_t>& ids, Section&& section) {
  constexpr size_t npos = std::string_view::npos;
  std::vector<const Tokenizer::Impl::AddedMatch*> wanted;
  for (const auto& a : tokens)
    if (allow_special || !a.special) wanted.push_back(&a);
  std::vector<size_t> next(wanted.size());  // next occurrence of each at or after pos
  for (size_t k = 0; k < next.size(); ++k) next[k] = text.find(wanted[k]->text);
  size_t pos = 0;
  while (pos <= text.size()) {
    size_t best = npos, best_k = 0;
    for (size_t k = 0; k < next.size(); ++k) {
      if (next[k] != npos && next[k] < pos) next[k] = text.find(wanted[k]->text, pos);
      if (next[k] < best) best = next[k], best_k = k;
    }
    if (best == npos) break;
    if (best > pos) section(text.substr(pos, best - pos), text_start && pos == 0);
    ids.push_back(wanted[best_k]->id);
    pos = best + wanted[best_k]->text.size();
  }
  if (pos < text.size()) section(text.substr(pos), text_start && pos == 0);
}

}  // namespace

std::vector<int32_t> Tokenizer::encode(std::string_view text, const EncodeOptions& opts) const {
  const Impl& t = impl();
  std::vector<int32_t> ids;
  ids.reserve(text.size() / 3 + 1);
  // Hugging Face's order: the non-normalized added tokens in the raw text, then in each part between them (its
  // normalized form, with a Unicode normalizer) the normalized ones; what is left is BPE-encoded.
  split_on_added(text, t.match_raw, opts.allow_special, true, ids, [&](std::string_view part, bool at_start) {
    if (t.match_normalized.empty()) return t.encode_plain(part, ids, at_start);
    if (t.normalization.empty()) {  // no Unicode normalizer: the part is its normalized text (see match_normalized)
      split_on_added(part, t.match_normalized, opts.allow_special, at_start, ids,
                     [&](std::string_view p, bool s) { t.encode_plain(p, ids, s); });
      return;
    }
    const std::string normal = tok::normalize(part, t.normalization);
    split_on_added(normal, t.match_normalized, opts.allow_special, at_start, ids,
                   [&](std::string_view p, bool s) { t.encode_plain(p, ids, s, /*normalized=*/true); });
  });
  return ids;
}

std::string Tokenizer::decode(std::span<const int32_t> ids) const {
  size_t n = 0;
  for (const int32_t id : ids)  // all checked before any output
    if (const std::string* b = bytes_of(id)) n += b->size();
  std::string out;
  out.reserve(n);
  for (const int32_t id : ids)
    if (const std::string* b = bytes_of(id)) out += *b;  // a padding id adds nothing
  if (impl().strip_leading_space && !out.empty() && out.front() == ' ') out.erase(0, 1);
  return out;
}

const std::string& Tokenizer::decode_token(int32_t id) const {
  static const std::string nothing;
  const std::string* b = bytes_of(id);
  return b ? *b : nothing;
}

const std::string& Tokenizer::id_to_token(int32_t id) const {
  if (!bytes_of(id))
    raise<InvalidArgument>(
        "token id {} is a padding id of the model's vocabulary ({} ids; the tokenizer ({}) has {}): it has no "
        "vocabulary string",
        id, model_vocab_, impl().source, vocab_size());
  return impl().token_str[size_t(id)];
}

std::optional<int32_t> Tokenizer::token_to_id(std::string_view token) const {
  const auto it = impl().str_to_id.find(token);
  return it == impl().str_to_id.end() ? std::nullopt : std::optional<int32_t>(it->second);
}

int32_t Tokenizer::vocab_size() const { return int32_t(impl().kind.size()); }
int64_t Tokenizer::model_vocab_size() const {
  const int32_t own = vocab_size();  // throws for a moved-from tokenizer, bound or not
  return model_vocab_ > 0 ? model_vocab_ : own;
}
std::optional<int32_t> Tokenizer::bos_token_id() const { return impl().bos; }
std::optional<int32_t> Tokenizer::eos_token_id() const { return impl().eos; }
const std::vector<int32_t>& Tokenizer::prompt_prefix() const { return impl().prefix; }
const std::vector<int32_t>& Tokenizer::prompt_suffix() const { return impl().suffix; }
size_t Tokenizer::num_merges() const { return impl().bpe.num_merges(); }
const std::string& Tokenizer::source() const { return impl().source; }

void Tokenizer::check_fits(int64_t model_vocab, const std::string& model_dir) const {
  if (vocab_size() > model_vocab)
    raise<FormatError>("{}: the tokenizer ({}) has {} tokens but the model's vocabulary is {}; they do not belong "
                       "together",
                       model_dir, source(), vocab_size(), model_vocab);
}

Tokenizer Tokenizer::for_model(int64_t model_vocab, const std::string& model_dir) const {
  (void)impl();  // a moved-from tokenizer is named as such, whatever the arguments
  constexpr int64_t max_ids = int64_t(std::numeric_limits<int32_t>::max()) + 1;
  if (model_vocab < 1)
    raise<InvalidArgument>("Tokenizer::for_model: model_vocab must be a vocabulary size >= 1, got {} ({})",
                           model_vocab, model_dir);
  if (model_vocab > max_ids)
    raise<InvalidArgument>("{}: the model's vocabulary of {} ids exceeds the {} that int32 token ids can name",
                           model_dir, model_vocab, max_ids);
  check_fits(model_vocab, model_dir);
  Tokenizer bound = *this;
  bound.model_vocab_ = model_vocab;
  return bound;
}

bool Tokenizer::is_special(int32_t id) const {
  const Impl& t = impl();
  return id >= 0 && size_t(id) < t.kind.size() && t.kind[size_t(id)] == Impl::kAdded;
}

}  // namespace kq
