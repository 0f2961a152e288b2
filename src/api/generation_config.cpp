// EOS token ids from generation_config.json / config.json (see the header).
#include "api/generation_config.hpp"

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <limits>
#include <optional>
#include <string>
#include <system_error>

#include <fmt/core.h>

#include "io/atomic_dir.hpp"
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

/// Whether anything is at `path`: false only when there is nothing there (not
/// even a link). A symbolic link that leads nowhere (dangling, or a loop) is a
/// FormatError naming the file: such a file was meant to be read, so treating
/// it as absent would silently use the next source.
bool present(const std::filesystem::path& path) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::file_status link = fs::symlink_status(path, ec);
  if (link.type() == fs::file_type::not_found) return false;
  if (ec) raise<FormatError>("{}: cannot be accessed ({})", path.string(), ec.message());
  if (fs::is_symlink(link)) {
    const fs::file_status target = fs::status(path, ec);
    if (target.type() == fs::file_type::not_found || ec) {
      std::error_code read_ec;
      const fs::path to = fs::read_symlink(path, read_ec);
      raise<FormatError>("{}: is a symbolic link to '{}', which {}; fix or remove the link", path.string(),
                         to.string(),
                         target.type() == fs::file_type::not_found ? std::string("does not exist")
                                                                   : "cannot be reached (" + ec.message() + ")");
    }
  }
  return true;
}

/// The ids `path` sets, or nullopt when the file is absent, or the key is
/// absent or null, or every id it lists is outside the vocabulary (the next
/// source, named by `next` in warnings, is used then).
std::optional<EosTokens> eos_from(const std::filesystem::path& path, int64_t vocab_size, const char* next) {
  if (!present(path)) return std::nullopt;
  const std::string file = path.string();
  const nlohmann::json j = io::load_hf_json_file(path);  // a BOM: transformers' json.load refuses it
  if (!j.is_object()) raise<FormatError>("{}: expected a JSON object", file);
  const auto it = j.find("eos_token_id");
  if (it == j.end() || it->is_null()) return std::nullopt;
  EosTokens e;
  e.source = file;
  std::vector<int32_t> ids;
  if (it->is_array()) {
    for (const nlohmann::json& v : *it) ids.push_back(parse_id(v, file));
    if (ids.empty()) {
      warn(fmt::format("{}: eos_token_id is an empty list: generation does not stop at an end-of-sequence token "
                       "(as in Hugging Face transformers); remove the key to use {}",
                       file, next));
      return e;
    }
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
  if (e.ids.empty()) {  // every id was outside the vocabulary
    warn(fmt::format("{}: no eos_token_id is inside the vocabulary; using {} instead", file, next));
    return std::nullopt;
  }
  return e;
}

/// `key` of `j` as a float: a JSON number, finite as a float, checked by `ok` (`range` says the allowed
/// range in the message). Empty when absent or null. Throws FormatError naming `file` and `key`.
template <class Ok>
std::optional<float> number_key(const nlohmann::json& j, const char* key, const std::string& file, Ok ok,
                                const char* range) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number())
    raise<FormatError>("{}: {} must be a number ({}), got {}", file, key, range, io::json_excerpt(*it));
  const double v = it->get<double>();
  if (!std::isfinite(v) || std::abs(v) > double(std::numeric_limits<float>::max()) || !ok(v))
    raise<FormatError>("{}: {} must be {}, got {}", file, key, range, io::json_excerpt(*it));
  return float(v);
}

/// `key` of `j` as an integer in [lo, hi]; empty when absent or null. Throws FormatError naming `file` and `key`.
std::optional<int64_t> integer_key(const nlohmann::json& j, const char* key, const std::string& file, int64_t lo,
                                   int64_t hi) {
  const auto it = j.find(key);
  if (it == j.end() || it->is_null()) return std::nullopt;
  if (!it->is_number_integer())
    raise<FormatError>("{}: {} must be an integer ({} .. {}), got {}", file, key, lo, hi, io::json_excerpt(*it));
  if (it->is_number_unsigned() ? it->get<uint64_t>() > uint64_t(hi)
                               : (it->get<int64_t>() < lo || it->get<int64_t>() > hi))
    raise<FormatError>("{}: {} must be in {} .. {}, got {}", file, key, lo, hi, io::json_excerpt(*it));
  return it->get<int64_t>();
}

}  // namespace

GenerationDefaults load_generation_defaults(const std::filesystem::path& model_dir) {
  io::check_not_staging_folder(model_dir);  // not "absent": an unfinished kq quantize output may lack the file
  const std::filesystem::path path = model_dir / "generation_config.json";
  GenerationDefaults g;
  if (!present(path)) return g;
  const std::string file = path.string();
  const nlohmann::json j = io::load_hf_json_file(path);
  if (!j.is_object()) raise<FormatError>("{}: expected a JSON object", file);
  g.source = file;
  if (const auto it = j.find("do_sample"); it != j.end() && !it->is_null()) {
    if (!it->is_boolean())
      raise<FormatError>("{}: do_sample must be true or false, got {}", file, io::json_excerpt(*it));
    g.do_sample = it->get<bool>();
  }
  g.temperature = number_key(j, "temperature", file, [](double v) { return v >= 0; }, "a finite number >= 0");
  g.top_p = number_key(j, "top_p", file, [](double v) { return v > 0 && v <= 1; }, "in (0, 1]");
  g.repetition_penalty =
      number_key(j, "repetition_penalty", file, [](double v) { return v > 0; }, "a finite number > 0; 1 = off");
  if (const auto k = integer_key(j, "top_k", file, 0, std::numeric_limits<int>::max())) g.top_k = int(*k);
  g.max_new_tokens = integer_key(j, "max_new_tokens", file, 0, int64_t(1) << 30);
  return g;
}

EosTokens load_eos_token_ids(const std::filesystem::path& model_dir, int64_t vocab_size) {
  io::check_not_staging_folder(model_dir);
  if (auto e = eos_from(model_dir / "generation_config.json", vocab_size,
                        "config.json's eos_token_id (or the tokenizer's EOS token)"))
    return *std::move(e);
  if (auto e = eos_from(model_dir / "config.json", vocab_size, "the tokenizer's EOS token")) return *std::move(e);
  return {};
}

}  // namespace kq
