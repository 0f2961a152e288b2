#include "tokenizer/pretokenizer.hpp"

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <string>

#include "kq/error.hpp"

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

}  // namespace

struct Pretokenizer::Compiled {
  pcre2_code* code = nullptr;
  bool jit = false;
  ~Compiled() { pcre2_code_free(code); }
};

Pretokenizer::Pretokenizer() : c_(std::make_unique<Compiled>()) {
  int err = 0;
  PCRE2_SIZE err_off = 0;
  c_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(kGpt2Pattern.data()), kGpt2Pattern.size(),
                           PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &err, &err_off, nullptr);
  if (!c_->code)
    raise<Error>("tokenizer: PCRE2 cannot compile the GPT-2 pattern at offset {}: {}", err_off,
                 pcre2_message(err));
  // JIT is optional: without it (or if it fails) the interpreter is used.
  c_->jit = pcre2_jit_compile(c_->code, PCRE2_JIT_COMPLETE) == 0;
}

Pretokenizer::~Pretokenizer() = default;

bool Pretokenizer::jit() const { return c_->jit; }

void Pretokenizer::split(std::string_view text, std::vector<std::string_view>& out) const {
  MatchData m(c_->code);
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  const size_t n = text.size();
  size_t pos = 0;      // where the next search starts
  size_t covered = 0;  // end of the last emitted piece
  while (pos < n) {
    int rc = pcre2_match(c_->code, subject, n, pos, 0, m.md, nullptr);
    if (rc == PCRE2_ERROR_JIT_STACKLIMIT)  // retry with the heap-based interpreter
      rc = pcre2_match(c_->code, subject, n, pos, PCRE2_NO_JIT, m.md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) raise<Error>("tokenizer: pre-tokenization failed at byte {}: {}", pos, pcre2_message(rc));
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(m.md);
    const size_t b = ov[0], e = ov[1];
    if (b > covered) {  // bytes no match covers (invalid UTF-8)
      out.push_back(text.substr(covered, b - covered));
      covered = b;
    }
    if (e > b) {
      out.push_back(text.substr(b, e - b));
      covered = e;
      pos = e;
    } else {
      pos = b + 1;  // empty match: impossible with this pattern; never loop
    }
  }
  if (covered < n) out.push_back(text.substr(covered));
}

}  // namespace kq::tok
