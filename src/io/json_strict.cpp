#include "io/json_strict.hpp"

#include <fmt/core.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <optional>
#include <string>
#include <unordered_set>
#include <utility>
#include <vector>

#include "io/file_kind.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"

namespace kq::io {

namespace {

/// A SAX handler (nlohmann::json_sax) that builds nothing: it keeps, for every
/// open object, a hash set of the keys seen so far in it, and records the
/// first key that repeats, so the check costs O(1) per key (linear overall).
/// nlohmann's callback parser is not used: on every nested object's end it
/// scans the whole parent object for discarded members, which is quadratic in
/// the member count (a safetensors header with 10^6 tensors never finished).
class DuplicateKeyFinder {
 public:
  using json = nlohmann::json;

  bool null() { return true; }
  bool boolean(bool /*val*/) { return true; }
  bool number_integer(json::number_integer_t /*val*/) { return true; }
  bool number_unsigned(json::number_unsigned_t /*val*/) { return true; }
  bool number_float(json::number_float_t /*val*/, const json::string_t& /*text*/) { return true; }
  bool string(json::string_t& /*val*/) { return true; }
  bool binary(json::binary_t& /*val*/) { return true; }
  bool start_array(std::size_t /*elements*/) { return enter(); }
  bool end_array() {
    --depth_;
    return true;
  }

  bool start_object(std::size_t /*elements*/) {
    if (!enter()) return false;
    open_objects_.emplace_back();  // an empty set allocates nothing
    return true;
  }
  bool end_object() {
    --depth_;
    if (!open_objects_.empty()) open_objects_.pop_back();
    return true;
  }
  bool key(json::string_t& val) {
    // Keys always belong to the innermost open object; after the first
    // duplicate the sets are not grown any more (only syntax is still checked).
    if (!duplicate_ && !open_objects_.empty() && !open_objects_.back().insert(val).second) duplicate_ = val;
    return true;
  }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/, const json::exception& ex) {
    syntax_error_ = ex.what();
    return false;  // stop parsing
  }

  const std::optional<std::string>& duplicate() const { return duplicate_; }
  const std::optional<std::string>& syntax_error() const { return syntax_error_; }
  bool too_deep() const { return too_deep_; }

 private:
  /// One more open array/object; false (stop parsing) beyond kMaxJsonDepth.
  bool enter() {
    if (++depth_ > kMaxJsonDepth) {
      too_deep_ = true;
      return false;
    }
    return true;
  }

  std::size_t depth_ = 0;  // arrays/objects open now
  bool too_deep_ = false;
  std::vector<std::unordered_set<std::string>> open_objects_;  // one per open object; arrays push nothing
  std::optional<std::string> duplicate_;
  std::optional<std::string> syntax_error_;
};

}  // namespace

nlohmann::json parse_json_strict(std::string_view text, const std::string& source, uint64_t first_offset) {
  using json = nlohmann::json;
  // nlohmann's lexer takes a NUL byte for the end of the input (as in a C
  // string): "{...}\0junk" parsed as "{...}". JSON text cannot hold one (in a
  // string it must be escaped as \u0000), so any NUL is an error.
  if (const std::size_t nul = text.find('\0'); nul != std::string_view::npos)
    raise<FormatError>("{}: a NUL byte at offset {} (JSON text cannot contain one)", source, first_offset + nul);
  // Pass 1 (SAX, no DOM): syntax, UTF-8 and duplicate keys. A syntax error
  // anywhere wins over a duplicate key, as nlohmann reports it.
  DuplicateKeyFinder finder;
  const bool ok = json::sax_parse(text.begin(), text.end(), &finder);
  if (finder.too_deep())  // checked first: parsing stopped there, the rest was not read
    raise<FormatError>("{}: JSON arrays/objects nested more than {} levels deep (model files nest a few levels)",
                       source, kMaxJsonDepth);
  if (!ok || finder.syntax_error())  // its "last read: '...'" quotes the file's bytes as they are
    raise<FormatError>("{}: invalid JSON: {}", source,
                       escape_for_terminal(finder.syntax_error().value_or("parse stopped")));
  if (finder.duplicate())
    raise<FormatError>("{}: duplicate JSON key '{}'", source, escape_for_terminal(*finder.duplicate()));
  // Pass 2: nlohmann's plain DOM parser (linear; no callback). The text was
  // just accepted, so an error here is not expected, but is reported the same.
  try {
    return json::parse(text.begin(), text.end());
  } catch (const json::exception& e) {
    raise<FormatError>("{}: invalid JSON: {}", source, escape_for_terminal(e.what()));
  }
}

namespace {

/// Builds json_excerpt's text: stops adding once more than `limit` bytes are
/// written, and summarizes containers at nesting level kExcerptDepth.
class Excerpt {
 public:
  using json = nlohmann::json;
  static constexpr int kExcerptDepth = 3;

  explicit Excerpt(std::size_t limit) : limit_(limit) {}

  void value(const json& v, int depth) {
    if (full()) return;
    if (v.is_array() || v.is_object()) {
      if (depth >= kExcerptDepth && !v.empty()) {
        out_ += v.is_array() ? fmt::format("<array of {} element{}>", v.size(), v.size() == 1 ? "" : "s")
                             : fmt::format("<object of {} member{}>", v.size(), v.size() == 1 ? "" : "s");
        return;
      }
      out_ += v.is_array() ? '[' : '{';
      bool first = true;
      for (auto it = v.begin(); it != v.end(); ++it) {
        if (full()) return;
        if (!first) out_ += ',';
        first = false;
        if (v.is_object()) {
          quoted(it.key());
          out_ += ':';
        }
        value(*it, depth + 1);
      }
      out_ += v.is_array() ? ']' : '}';
    } else if (v.is_string()) {
      quoted(v.get_ref<const std::string&>());
    } else {
      out_ += v.dump();  // a number, boolean, null or binary: short, no recursion
    }
  }

  std::string take() && { return std::move(out_); }

 private:
  bool full() const { return out_.size() > limit_; }

  /// `s` as a JSON string, only as much of it as can still be shown (a cut
  /// UTF-8 sequence becomes U+FFFD; the whole excerpt is cut later anyway).
  void quoted(const std::string& s) {
    const std::size_t room = limit_ + 1 - std::min(out_.size(), limit_);
    const json piece = s.size() <= room ? s : s.substr(0, room);
    out_ += piece.dump(-1, ' ', false, json::error_handler_t::replace);
  }

  std::size_t limit_;
  std::string out_;
};

}  // namespace

std::string json_excerpt(const nlohmann::json& v, std::size_t max_chars) {
  Excerpt e(max_chars);
  e.value(v, 0);
  return text_excerpt(std::move(e).take(), max_chars);
}

std::string json_text(const nlohmann::json& v, int indent) {
  return v.dump(indent, ' ', false, nlohmann::json::error_handler_t::replace);
}

std::string text_excerpt(std::string_view text, std::size_t max_chars) {
  if (text.size() <= max_chars) return escape_for_terminal(text);
  std::size_t cut = max_chars;  // back to the start of a UTF-8 character
  while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;
  std::string out = escape_for_terminal(text.substr(0, cut));
  out += "...";
  return out;
}

std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes) {
  if (const auto why = why_not_regular_file(file)) raise<FormatError>("{}: {}", file.string(), *why);
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(file, ec);
  if (ec) raise<FormatError>("{}: cannot stat: {}", file.string(), ec.message());
  if (size > max_bytes)
    raise<FormatError>("{}: file is {} bytes, more than the {} bytes allowed", file.string(), size, max_bytes);
  errno = 0;
  std::ifstream in(file, std::ios::binary);
  if (!in)  // (errno of the failed open(2), as in read_utf8_text_file: e.g. "Permission denied")
    raise<FormatError>("{}: cannot open for reading: {}", file.string(),
                       errno ? std::strerror(errno) : "the open failed");
  std::string text(size_t(size), '\0');
  in.read(text.data(), std::streamsize(size));
  if (in.gcount() != std::streamsize(size)) raise<FormatError>("{}: short read", file.string());
  return text;
}

nlohmann::json load_json_file(const std::filesystem::path& file, uint64_t max_bytes) {
  return parse_json_strict(read_text_file(file, max_bytes), file.string());
}

void refuse_utf8_bom(std::string_view text, const std::filesystem::path& file) {
  if (text.starts_with("\xEF\xBB\xBF"))
    raise<FormatError>("{}: starts with a UTF-8 byte-order mark (bytes EF BB BF) before the JSON, which Hugging Face "
                       "refuses (JSON text must not begin with one); remove those 3 bytes",
                       file.string());
}

nlohmann::json load_hf_json_file(const std::filesystem::path& file, uint64_t max_bytes) {
  const std::string text = read_text_file(file, max_bytes);
  refuse_utf8_bom(text, file);
  return parse_json_strict(text, file.string());
}

}  // namespace kq::io
