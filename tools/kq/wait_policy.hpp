#pragma once
// OMP_WAIT_POLICY as the OpenMP runtime reads it (libgomp and LLVM's libomp):
// ACTIVE or PASSIVE in any case, surrounding white space ignored; any other
// value is ignored by the runtime, which then keeps its default (spinning for
// a while between parallel regions).
#include <cctype>
#include <optional>
#include <string>
#include <string_view>

namespace kq::cli {

/// "ACTIVE" or "PASSIVE" for a value the OpenMP runtime takes, nullopt for
/// one it ignores (or a null `env`: the variable is unset).
inline std::optional<std::string> parse_wait_policy(const char* env) {
  if (!env) return std::nullopt;
  std::string_view v(env);
  const auto space = [](char c) { return std::isspace(static_cast<unsigned char>(c)) != 0; };
  while (!v.empty() && space(v.front())) v.remove_prefix(1);
  while (!v.empty() && space(v.back())) v.remove_suffix(1);
  std::string upper(v);
  for (char& c : upper) c = char(std::toupper(static_cast<unsigned char>(c)));
  if (upper == "ACTIVE" || upper == "PASSIVE") return upper;
  return std::nullopt;
}

}  // namespace kq::cli
