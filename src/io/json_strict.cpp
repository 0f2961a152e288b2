#include "io/json_strict.hpp"

#include <fstream>
#include <set>
#include <vector>

#include "io/file_kind.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"

namespace kq::io {

nlohmann::json parse_json_strict(std::string_view text, const std::string& source) {
  using json = nlohmann::json;
  // One set of seen keys per open object; arrays do not push.
  std::vector<std::set<std::string>> open_objects;
  std::string duplicate;
  bool found_duplicate = false;
  auto on_event = [&](int /*depth*/, json::parse_event_t ev, json& parsed) {
    switch (ev) {
      case json::parse_event_t::object_start:
        open_objects.emplace_back();
        break;
      case json::parse_event_t::object_end:
        if (!open_objects.empty()) open_objects.pop_back();
        break;
      case json::parse_event_t::key:
        if (!found_duplicate && !open_objects.empty() && parsed.is_string()) {
          const auto& key = parsed.get_ref<const std::string&>();
          if (!open_objects.back().insert(key).second) {
            found_duplicate = true;
            duplicate = key;
          }
        }
        break;
      default:
        break;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text.begin(), text.end(), on_event);
  } catch (const json::exception& e) {  // its "last read: '...'" quotes the file's bytes as they are
    raise<FormatError>("{}: invalid JSON: {}", source, escape_for_terminal(e.what()));
  }
  if (found_duplicate)
    raise<FormatError>("{}: duplicate JSON key '{}'", source, escape_for_terminal(duplicate));
  return j;
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
