#pragma once
// Strict JSON parsing for untrusted model files (safetensors headers, index
// and config files): RFC 8259 JSON via nlohmann::json, plus rejection of
// duplicate keys in any object (nlohmann would silently keep the last one).
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kq::io {

/// Parses `text` as JSON. Throws FormatError "<source>: ..." on a syntax
/// error, invalid UTF-8, or a key that appears twice in the same object; the
/// bytes of `text` such a message quotes are escaped (escape_for_terminal in
/// io/utf8_text.hpp: invalid UTF-8 and control characters as \xNN), so a
/// binary or hostile file never sends raw bytes to the terminal.
nlohmann::json parse_json_strict(std::string_view text, const std::string& source);

/// Reads a whole (small) text file. Throws FormatError naming the file if it
/// is not a regular file (saying what it is instead: not found, a directory,
/// a device, a FIFO, ...; see why_not_regular_file, nothing is opened then),
/// cannot be opened or read, or is larger than `max_bytes`.
std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes);

/// Reads and parses a JSON file with parse_json_strict (at most `max_bytes`).
nlohmann::json load_json_file(const std::filesystem::path& file, uint64_t max_bytes = 64u << 20);

}  // namespace kq::io
