// EOS token ids from generation_config.json / config.json (see the header).
#include "api/generation_config.hpp"

#include <algorithm>
#include <limits>
#include <optional>

#include <fmt/core.h>

#include "io/json_strict.hpp"
#include "kq/error.hpp"
#include "kq/warning.hpp"

namespace kq {
namespace {

/// One integer id of `file`'s eos_token_id. Throws FormatError.
int32_t parse_id(const nlohmann::json& v, const std::string& file) {
  if (!v.is_number_integer())
    raise<FormatError>("{}: eos_token_id must be an integer or a list of integers, got {}", file, io::json_excerpt(v));
  if (v.is_number_unsigned() ? v.get<uint64_t>() > uint64_t(std::numeric_limits<int32_t>::max())
                             : (v.get<int64_t>() < 0 || v.get<int64_t>() > std::numeric_limits<int32_t>::max()))
    raise<FormatError>("{}: eos_token_id {} is not a token id (0 .. 2^31-1)", file, io::json_excerpt(v));
  return static_cast<int32_t>(v.get<int64_t>());
}

/// The ids `file` sets, or nullopt when the file is absent, or the key is
/// absent or null (the next source is used then).
std::optional<EosTokens> eos_from(const std::filesystem::path& path, int64_t vocab_size) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec)) return std::nullopt;
  const std::string file = path.string();
  const nlohmann::json j = io::load_json_file(path);
  if (!j.is_object()) raise<FormatError>("{}: expected a JSON object", file);
  const auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return std::nullopt;
  EosTokens e;
  e.source = file;
  std::vector<int32_t> ids;
  if (it->is_array()) {
    for (const nlohmann::json& v : *it) ids.push_back(parse_id(v, file));
  } else {
    ids.push_back(parse_id(*it, file));
  }
  for (int32_t id : ids) {
    if (std::find(e.ids.begin(), e.ids.end(), id) != e.ids.end()) continue;
    if (vocab_size > 0 && id >= vocab_size) {
      warn(fmt::format("{}: eos_token_id {} is outside the vocabulary (size {}) and can never be generated; ignored",
                       file, id, vocab_size));
      continue;
    }
    e.ids.push_back(id);
  }
  return e;
}

}  // namespace

EosTokens load_eos_token_ids(const std::filesystem::path& model_dir, int64_t vocab_size) {
  if (auto e = eos_from(model_dir / "generation_config.json", vocab_size)) return *std::move(e);
  if (auto e = eos_from(model_dir / "config.json", vocab_size)) return *std::move(e);
  return {};
}

}  // namespace kq
