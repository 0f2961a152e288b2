// Unicode normalization through utf8proc: see normalizer.hpp.
#include "tokenizer/normalizer.hpp"

#include <utf8proc.h>

#include <cstdlib>
#include <memory>
#include <new>

#include "kq/error.hpp"
#include "tokenizer/utf8.hpp"

namespace kq::tok {
namespace {

utf8proc_option_t options_of(UnicodeForm form) {
  // UTF8PROC_STABLE: the forms as UAX #15 defines them (utf8proc_NFC() and the others use the same options, but
  // need NUL-terminated text; utf8proc_map with a length takes a NUL byte as a character).
  switch (form) {
    case UnicodeForm::kNfc: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE);
    case UnicodeForm::kNfd: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE);
    case UnicodeForm::kNfkc: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_COMPOSE | UTF8PROC_COMPAT);
    case UnicodeForm::kNfkd: return utf8proc_option_t(UTF8PROC_STABLE | UTF8PROC_DECOMPOSE | UTF8PROC_COMPAT);
  }
  raise<Error>("tokenizer: Unicode normalization form {} is not one of NFC, NFD, NFKC, NFKD", int(form));
}

/// Appends `run` (well-formed UTF-8, not all ASCII) in form `form` to `out`.
void append_normalized(std::string_view run, UnicodeForm form, std::string& out) {
  utf8proc_uint8_t* dst = nullptr;
  const utf8proc_ssize_t n = utf8proc_map(reinterpret_cast<const utf8proc_uint8_t*>(run.data()),
                                          utf8proc_ssize_t(run.size()), &dst, options_of(form));
  const std::unique_ptr<utf8proc_uint8_t, decltype(&std::free)> owned(dst, &std::free);
  if (n == UTF8PROC_ERROR_NOMEM) throw std::bad_alloc();
  if (n < 0)  // the run is well-formed (decode_utf8), so utf8proc has no reason to refuse it
    raise<Error>("tokenizer: Unicode normalization (utf8proc {}) failed on {} bytes of text: {}", utf8proc_version(),
                 run.size(), utf8proc_errmsg(n));
  out.append(reinterpret_cast<const char*>(dst), size_t(n));
}

}  // namespace

std::optional<UnicodeForm> unicode_form(std::string_view type) {
  if (type == "NFC") return UnicodeForm::kNfc;
  if (type == "NFD") return UnicodeForm::kNfd;
  if (type == "NFKC") return UnicodeForm::kNfkc;
  if (type == "NFKD") return UnicodeForm::kNfkd;
  return std::nullopt;
}

std::string normalize(std::string_view text, UnicodeForm form) {
  std::string out;
  out.reserve(text.size());
  size_t i = 0;
  while (i < text.size()) {
    // The maximal well-formed run from i (ascii: whether it is all ASCII, which every form leaves as is).
    size_t end = i;
    bool ascii = true;
    for (char32_t cp = 0; end < text.size();) {
      const size_t len = decode_utf8(text, end, cp);
      if (len == 0) break;
      ascii = ascii && cp < 0x80;
      end += len;
    }
    const std::string_view run = text.substr(i, end - i);
    if (ascii)
      out += run;
    else
      append_normalized(run, form, out);
    if (end < text.size()) out.push_back(text[end]);  // a byte that starts no well-formed sequence: kept
    i = end + 1;
  }
  return out;
}

std::string normalize(std::string_view text, const std::vector<UnicodeForm>& forms) {
  std::string out(text);
  for (const UnicodeForm f : forms) out = normalize(out, f);
  return out;
}

}  // namespace kq::tok
