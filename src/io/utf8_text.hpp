#pragma once
// UTF-8 validation of user text (evaluation texts, prompts): RFC 3629
// well-formedness, so a text in another encoding (Latin-1, UTF-16, a binary
// file) is reported where it goes wrong instead of being tokenized into
// silent garbage.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace kq::io {

/// Byte offset of the first byte of `text` that does not start a well-formed
/// UTF-8 sequence (RFC 3629 §4: overlong forms, surrogates U+D800..U+DFFF,
/// values above U+10FFFF, stray continuation bytes and truncated sequences are
/// all ill-formed), or nullopt when all of `text` is valid UTF-8.
std::optional<size_t> find_invalid_utf8(std::string_view text);

/// `text` made safe to print on a terminal, for error messages that quote
/// bytes of a file (JSON parse errors, keys, tensor names): valid UTF-8 text
/// is kept as it is; every byte that is not part of a well-formed UTF-8
/// sequence (see find_invalid_utf8) and every C0 control character
/// (U+0000..U+001F: also tab and newline) and DEL is written as `\xNN` (two
/// upper-case hex digits), and a C1 control character (U+0080..U+009F, which
/// terminals may act on, e.g. U+009B CSI) as `\u00NN`, and so is a character
/// that is invisible or reorders the text around it: the bidirectional
/// controls U+202A..U+202E and U+2066..U+2069 (U+202E prints what follows
/// backwards), the other format characters (U+200B..U+200F, U+2060..U+2064,
/// U+FEFF, U+00AD, ...) as `\uNNNN` (`\UNNNNNNNN` above U+FFFF: the tag
/// characters). Backslashes are kept,
/// so escaping twice changes nothing more. The result is valid UTF-8 without
/// control characters. Never throws (except std::bad_alloc).
std::string escape_for_terminal(std::string_view text);

/// A name from a file (a tensor name, a JSON key) for a message:
/// escape_for_terminal(name) when it has at most `max_chars` characters (code
/// points; a byte of no well-formed sequence counts as one), else its first
/// `max_chars` characters, escaped, then "… (N characters)" with N its length
/// (a 100,000-character tensor name gave a 100 KB warning line). Never throws
/// (except std::bad_alloc).
std::string name_excerpt(std::string_view name, size_t max_chars = 200);

/// A whole message for the terminal: escape_for_terminal(message) when it has
/// at most head_chars + tail_chars characters, else its first `head_chars`
/// and last `tail_chars` characters, escaped, around " … (N of its M
/// characters left out) … ". kq's command line prints every warning and error
/// through it, so that a name quoted whole from a file never makes a line of
/// megabytes. Never throws (except std::bad_alloc).
std::string message_excerpt(std::string_view message, size_t head_chars = 1500, size_t tail_chars = 500);

/// Throws FormatError "<source>: invalid UTF-8 at byte offset N (line L,
/// column C): byte 0xXX ..." when `text` is not valid UTF-8 (see
/// find_invalid_utf8). `source` names the file or option (e.g. "--prompt").
/// Lines and columns count from 1; the column counts characters (code points), as an editor does (a byte order
/// mark at the start of `text` is not one).
void check_utf8(std::string_view text, const std::string& source);

/// Reads a whole text file (at most `max_bytes`), streamed to its end (the
/// reported size is not trusted: /proc files report 0), and checks that it is
/// UTF-8 (check_utf8 naming the file). A UTF-8 byte order mark is kept (it is valid
/// UTF-8). Throws FormatError naming the file: missing, unreadable, too large,
/// or not UTF-8.
std::string read_utf8_text_file(const std::filesystem::path& file, uint64_t max_bytes);

}  // namespace kq::io
