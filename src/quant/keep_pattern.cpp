#include "quant/keep_pattern.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include "kq/error.hpp"

namespace kq {
namespace {

std::string pcre2_message(int code) {
  PCRE2_UCHAR buf[256];
  const int n = pcre2_get_error_message(code, buf, sizeof(buf));
  return n < 0 ? "PCRE2 error " + std::to_string(code) : std::string(reinterpret_cast<const char*>(buf));
}

/// Typical module names, searched once at compile time with PCRE2's
/// shortcuts off, so a pattern that backtracks exponentially on a layer name
/// is refused up front rather than only on the model where it would hit.
constexpr const char* kProbeNames[] = {"model.layers.31.self_attn.q_proj", "model.layers.0.mlp.down_proj",
                                       "transformer.h.11.mlp.c_proj", "transformer.h.0.attn.c_attn",
                                       "lm_head"};

struct Code {
  pcre2_code* code = nullptr;
  ~Code() { pcre2_code_free(code); }
};

struct MatchContext {
  pcre2_match_context* ctx = pcre2_match_context_create(nullptr);
  MatchContext() {
    if (!ctx) throw std::bad_alloc();
    pcre2_set_match_limit(ctx, kKeepPatternMatchLimit);
    pcre2_set_depth_limit(ctx, kKeepPatternMatchLimit);
  }
  ~MatchContext() { pcre2_match_context_free(ctx); }
};

/// pcre2_match of `code` on `name`: 1 match, 0 no match, < 0 a PCRE2 error.
int match(const pcre2_code* code, std::string_view name) {
  static thread_local MatchContext mc;
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code, nullptr);
  if (!md) throw std::bad_alloc();
  const int rc = pcre2_match(code, reinterpret_cast<PCRE2_SPTR>(name.data()), name.size(), 0, 0, md, mc.ctx);
  pcre2_match_data_free(md);
  return rc == PCRE2_ERROR_NOMATCH ? 0 : rc < 0 ? rc : 1;
}

pcre2_code* compile(const std::string& pattern, uint32_t options) {
  pcre2_compile_context* cc = pcre2_compile_context_create(nullptr);
  if (!cc) throw std::bad_alloc();
  pcre2_set_parens_nest_limit(cc, kMaxKeepPatternNesting);
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code =
      pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), options, &err, &off, cc);
  pcre2_compile_context_free(cc);
  if (!code)
    raise<InvalidArgument>("'{}' is not a valid regular expression: {} (at offset {})", pattern,
                           pcre2_message(err), off);
  return code;
}

/// Throws InvalidArgument when `pattern` is not valid UTF-8 (RFC 3629, as
/// PCRE2 checks it: the pattern is compiled as a UTF literal only for that
/// check; it is matched bytewise, not in UTF mode). A quantized folder's
/// config.json holds the patterns, and JSON text is UTF-8.
void check_utf8(const std::string& pattern) {
  int err = 0;
  PCRE2_SIZE off = 0;
  pcre2_code* code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                   PCRE2_UTF | PCRE2_LITERAL, &err, &off, nullptr);
  pcre2_code_free(code);
  // (a PCRE2 built without Unicode support fails with another error: no check then)
  if (!code && err <= PCRE2_ERROR_UTF8_ERR1 && err >= PCRE2_ERROR_UTF8_ERR21)
    raise<InvalidArgument>(
        "'{}' is not valid UTF-8 ({} at byte offset {}); a layer-name pattern is saved in the quantized folder's "
        "config.json, which is UTF-8 text",
        pattern, pcre2_message(err), off);
}

}  // namespace

struct KeepPattern::Compiled : Code {};

KeepPattern::KeepPattern(std::string pattern)
    : pattern_(std::move(pattern)), c_(std::make_unique<Compiled>()) {
  if (pattern_.size() > kMaxKeepPatternLength)
    raise<InvalidArgument>("a pattern of {} bytes is too long for a layer-name pattern (at most {}): '{}...'",
                           pattern_.size(), kMaxKeepPatternLength, pattern_.substr(0, 40));
  check_utf8(pattern_);
  // One dialect, PCRE2's, for the check and the search (a second compile by
  // std::regex ECMAScript refused PCRE2 lookbehinds that the search would run).
  c_->code = compile(pattern_, 0);
  Code probe;
  probe.code = compile(pattern_, PCRE2_NO_START_OPTIMIZE | PCRE2_NO_AUTO_POSSESS | PCRE2_NO_DOTSTAR_ANCHOR);
  for (const char* name : kProbeNames) {
    const int rc = match(probe.code, name);
    if (rc < 0)
      raise<InvalidArgument>(
          "'{}' backtracks too much to be searched in layer names ({} on the typical layer name '{}', "
          "tried before any model is read); simplify it (e.g. no nested repetition such as '(.*)*')",
          pattern_, pcre2_message(rc), name);
  }
}

KeepPattern::~KeepPattern() = default;
KeepPattern::KeepPattern(KeepPattern&&) noexcept = default;
KeepPattern& KeepPattern::operator=(KeepPattern&&) noexcept = default;

bool KeepPattern::search(std::string_view name) const {
  const int rc = match(c_->code, name);
  if (rc < 0)
    raise<InvalidArgument>("keep pattern '{}' cannot be searched in layer name '{}': {}", pattern_, name,
                           pcre2_message(rc));
  return rc == 1;
}

std::vector<KeepPattern> compile_keep_patterns(const std::vector<std::string>& patterns) {
  std::vector<KeepPattern> out;
  out.reserve(patterns.size());
  for (const std::string& p : patterns) out.emplace_back(p);
  return out;
}

}  // namespace kq
