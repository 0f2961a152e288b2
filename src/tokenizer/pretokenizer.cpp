#include "tokenizer/pretokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <algorithm>
#include <string>

#include "io/json_strict.hpp"
#include "kq/error.hpp"
#include "tokenizer/utf8.hpp"

namespace kq::tok {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buf));
}

/// Owns a pcre2_match_data block.
struct MatchData {
  pcre2_match_data* md;
  explicit MatchData(const pcre2_code* code) : md(pcre2_match_data_create_from_pattern(code, nullptr)) {
    if (!md) raise<Error>("tokenizer: out of memory creating PCRE2 match data");
  }
  ~MatchData() { pcre2_match_data_free(md); }
  MatchData(const MatchData&) = delete;
  MatchData& operator=(const MatchData&) = delete;
};

/// Where in `text` the match attempt that made a search from `pos` fail with
/// `rc` started: PCRE2 tries each start in turn and reports no position. The
/// starts from `pos` are tried one character at a time, anchored (each
/// earlier one found no match, or the search would have returned it); the
/// first that fails with `rc` is the one, else `pos`.
size_t failing_start(const pcre2_code* code, pcre2_match_data* md, std::string_view text, size_t pos, int rc) {
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  for (size_t s = pos; s <= text.size();) {
    int r = pcre2_match(code, subject, text.size(), s, PCRE2_ANCHORED, md, nullptr);
    if (r == PCRE2_ERROR_JIT_STACKLIMIT)
      r = pcre2_match(code, subject, text.size(), s, PCRE2_ANCHORED | PCRE2_NO_JIT, md, nullptr);
    if (r == rc) return s;
    char32_t cp = 0;
    s += s < text.size() ? std::max<size_t>(1, decode_utf8(text, s, cp)) : 1;
  }
  return pos;
}

}  // namespace

std::string literal_pattern(std::string_view text) {
  std::string p;
  p.reserve(2 * text.size());
  for (const char ch : text) {
    const auto u = static_cast<unsigned char>(ch);
    const bool alnum = (u >= '0' && u <= '9') || (u >= 'A' && u <= 'Z') || (u >= 'a' && u <= 'z');
    if (u < 0x80 && !alnum) p.push_back('\\');
    p.push_back(ch);
  }
  return p;
}

struct Pretokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  std::string pattern, source;  // for the messages of split()
  ~Compiled() { pcre2_code_free(code); }
};

Pretokenizer::Pretokenizer(std::string_view pattern, std::string_view source) : c_(std::make_unique<Compiled>()) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  c_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!c_->code) {
    if (source.empty())
      raise<Error>("tokenizer: PCRE2 cannot compile the pre-tokenization pattern at offset {}: {}", err_off,
                   pcre2_message(err));
    raise<FormatError>("{}: the pre-tokenizer's regex '{}' does not compile (PCRE2, at offset {}: {})", source,
                       io::text_excerpt(pattern), err_off, pcre2_message(err));
  }
  // JIT is optional: without it (or if it fails) the interpreter is used.
  c_->jit = pcre2_jit_compile(c_->code, PCRE2_JIT_COMPLETE) == 0;
  c_->pattern = pattern;
  c_->source = source;
}

Pretokenizer::~Pretokenizer() = default;

bool Pretokenizer::jit() const { return c_->jit; }

void Pretokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  MatchData m(c_->code);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t pos = 0;                // where the next search starts
  size_t covered = 0;            // end of the last match
  bool skip_next_empty = false;  // rust-onig's FindMatches: drop the first empty match after a non-empty one
  while (pos <= n) {
    int rc = pcre2_match(c_->code, subject, n, pos, 0, m.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // retry with the heap-based interpreter
      rc = pcre2_match(c_->code, subject, n, pos, PCRE2_NO_JIT, m.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      const size_t at = failing_start(c_->code, m.md, text, pos, rc);
      if (c_->source.empty())
        raise<Error>("tokenizer: pre-tokenization failed at byte {}: {}", at, pcre2_message(rc));
      const bool limit = rc == PCRE2_ERROR_MATCHLIMIT || rc == PCRE2_ERROR_DEPTHLIMIT || rc == PCRE2_ERROR_HEAPLIMIT;
      raise<Error>("{}: the pre-tokenizer's regex '{}' failed on the text at byte {}: {}{}", c_->source,
                   io::text_excerpt(c_->pattern), at, pcre2_message(rc),
                   limit ? " (the pattern backtracks too much on the text from there)" : "");
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    const size_t b = ov[0], e = ov[1];
    pos = e;
    if (e == b) {  // an empty match: search on from the next character
      char32_t cp = 0;
      pos += e < n ? std::max<size_t>(1, decode_utf8(text, e, cp)) : 1;
      if (skip_next_empty) {
        skip_next_empty = false;
        continue;
      }
    } else {
      skip_next_empty = true;
    }
    if (b > covered) out.push_back(text.substr(covered, b - covered));  // bytes between matches
    if (e > b) out.push_back(text.substr(b, e - b));
    covered = e;
  }
  if (covered < n) out.push_back(text.substr(covered));
}

}  // namespace kq::tok
