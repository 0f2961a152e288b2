#include "io/json_strict.hpp"

#include <fstream>
#include <optional>
#include <string>
#include <unordered_set>
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
  bool start_array(std::size_t /*elements*/) { return true; }
  bool end_array() { return true; }

  bool start_object(std::size_t /*elements*/) {
    open_objects_.emplace_back();  // an empty set allocates nothing (deep nesting stays cheap)
    return true;
  }
  bool end_object() {
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

 private:
  std::vector<std::unordered_set<std::string>> open_objects_;  // one per open object; arrays push nothing
  std::optional<std::string> duplicate_;
  std::optional<std::string> syntax_error_;
};

}  // namespace

nlohmann::json parse_json_strict(std::string_view text, const std::string& source) {
  using json = nlohmann::json;
  // Pass 1 (SAX, no DOM): syntax, UTF-8 and duplicate keys. A syntax error
  // anywhere wins over a duplicate key, as nlohmann reports it.
  DuplicateKeyFinder finder;
  const bool ok = json::sax_parse(text.begin(), text.end(), &finder);
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

std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes) {
  if (const auto why = why_not_regular_file(file)) raise<FormatError>("{}: {}", file.string(), *why);
  std::error_code ec;
  const uint64_t size = std::filesystem::file_size(file, ec);
  if (ec) raise<FormatError>("{}: cannot stat: {}", file.string(), ec.message());
  if (size > max_bytes)
    raise<FormatError>("{}: file is {} bytes, more than the {} bytes allowed", file.string(), size, max_bytes);
  std::ifstream in(file, std::ios::binary);
  if (!in) raise<FormatError>("{}: cannot open for reading", file.string());
  std::string text(size_t(size), '\0');
  in.read(text.data(), std::streamsize(size));
  if (in.gcount() != std::streamsize(size)) raise<FormatError>("{}: short read", file.string());
  return text;
}

nlohmann::json load_json_file(const std::filesystem::path& file, uint64_t max_bytes) {
  return parse_json_strict(read_text_file(file, max_bytes), file.string());
}

}  // namespace kq::io
