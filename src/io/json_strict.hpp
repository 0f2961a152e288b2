#pragma once
// Strict JSON parsing for untrusted model files (safetensors headers, index
// and config files): RFC 8259 JSON via nlohmann::json, plus rejection of
// duplicate keys in any object (nlohmann would silently keep the last one)
// and of nesting deeper than kMaxJsonDepth; a bounded rendering of a JSON
// value for error messages (json_excerpt); and the text of every JSON file
// kq writes (json_text).
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace kq::io {

/// Deepest nesting of arrays/objects parse_json_strict accepts. nlohmann's
/// parser and destructor are iterative, but copying, comparing and dump()ing a
/// value recurse once per level: a 100,000-deep value in a config.json
/// overflowed the stack (SIGSEGV) when an error message dump()ed it. Model
/// files nest a handful of levels (safetensors headers 3, tokenizer.json < 10).
inline constexpr std::size_t kMaxJsonDepth = 512;

/// Parses `text` as JSON. Throws FormatError "<source>: ..." on a syntax
/// error, invalid UTF-8, a NUL byte anywhere (nlohmann would stop reading
/// there and ignore the rest; the message gives its offset in the file,
/// `first_offset` being that of text[0], e.g. 8 for a safetensors header),
/// arrays/objects nested more than kMaxJsonDepth deep,
/// or a key that appears twice in the same object; the
/// bytes of `text` such a message quotes are escaped (escape_for_terminal in
/// io/utf8_text.hpp: invalid UTF-8 and control characters as \xNN), so a
/// binary or hostile file never sends raw bytes to the terminal.
nlohmann::json parse_json_strict(std::string_view text, const std::string& source, uint64_t first_offset = 0);

/// A short, printable rendering of JSON value `v` for an error message: JSON
/// text (as nlohmann's dump() would write it, compact) where that fits in
/// `max_chars` characters, else cut there (at a UTF-8 character boundary)
/// with "..." appended; non-empty arrays/objects at nesting level 3 or deeper
/// (`v` itself is level 0) are shown as "<array of N elements>" / "<object of N members>" instead of
/// their content. Never recurses more than those few levels and never builds
/// more than about `max_chars` characters, whatever the size or depth of `v`
/// (dump() on a multi-megabyte value echoed all of it; on a 100,000-deep one
/// it overflowed the stack). Control characters and invalid UTF-8 in strings
/// are escaped (escape_for_terminal, io/utf8_text.hpp). Never throws (except
/// std::bad_alloc).
std::string json_excerpt(const nlohmann::json& v, std::size_t max_chars = 80);

/// `text` for an error message: cut after `max_chars` bytes (at a UTF-8
/// character boundary) with "..." appended when longer, and escaped with
/// escape_for_terminal. For strings from a file (a model_type, an activation
/// name) that may be megabytes long. Never throws (except std::bad_alloc).
std::string text_excerpt(std::string_view text, std::size_t max_chars = 80);

/// The JSON text of `v` for a file kq writes (`kq eval` / `kq bench` --json,
/// a quantized folder's config.json and its safetensors metadata): as
/// nlohmann's dump(indent), except that a string that is not valid UTF-8
/// (e.g. a file or folder name in another encoding, from the command line)
/// does not throw: each invalid byte is written as U+FFFD, the rest of the
/// string as it is. Every JSON writer of kq goes through it (dump() threw
/// type_error.316, an internal error after all the work, nothing written).
std::string json_text(const nlohmann::json& v, int indent = -1);

/// Reads a whole (small) text file. Throws FormatError naming the file if it
/// is not a regular file (saying what it is instead: not found, a directory,
/// a device, a FIFO, ...; see why_not_regular_file, nothing is opened then),
/// cannot be opened or read, or is larger than `max_bytes`.
std::string read_text_file(const std::filesystem::path& file, uint64_t max_bytes);

/// Reads and parses a JSON file with parse_json_strict (at most `max_bytes`).
nlohmann::json load_json_file(const std::filesystem::path& file, uint64_t max_bytes = 64u << 20);

/// Throws FormatError naming `file` when `text` (its contents) starts with a
/// UTF-8 byte-order mark (EF BB BF). For the files of a Hugging Face folder,
/// which Hugging Face refuses with one before the JSON (tokenizers'
/// serde_json: "expected value at line 1 column 1"; transformers' json.load:
/// "Unexpected UTF-8 BOM"; RFC 8259 forbids writing one), where kq's JSON
/// parser would skip it without a word.
void refuse_utf8_bom(std::string_view text, const std::filesystem::path& file);

/// load_json_file for a JSON file of a Hugging Face folder (config.json,
/// generation_config.json, tokenizer.json, tokenizer_config.json, vocab.json):
/// also refuse_utf8_bom.
nlohmann::json load_hf_json_file(const std::filesystem::path& file, uint64_t max_bytes = 64u << 20);

}  // namespace kq::io
