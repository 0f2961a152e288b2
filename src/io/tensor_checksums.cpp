// Per-tensor XXH3-64 checksums of kq folders (the record in tensor_checksums.hpp).
// xxHash is used header-only (XXH_INLINE_ALL): no library to link or to carry to
// another machine, only Debian's libxxhash-dev headers at build time.
#include "io/tensor_checksums.hpp"

#include <bit>
#include <cstring>
#include <optional>

#define XXH_INLINE_ALL
#include <xxhash.h>

#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"

namespace kq::io {
namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little, "the checksum's u64 fields are hashed as stored");

namespace {

void update_u64(XXH3_state_t& st, uint64_t v) { XXH3_64bits_update(&st, &v, sizeof v); }

void update_text(XXH3_state_t& st, std::string_view s) {
  update_u64(st, s.size());
  XXH3_64bits_update(&st, s.data(), s.size());
}

/// The 16 hexadecimal digits `s` (either case) as a number, else nullopt.
std::optional<uint64_t> parse_hex16(const std::string& s) {
  if (s.size() != 16) return std::nullopt;
  uint64_t v = 0;
  for (const char c : s) {
    int d = -1;
    if (c >= '0' && c <= '9') d = c - '0';
    if (c >= 'a' && c <= 'f') d = c - 'a' + 10;
    if (c >= 'A' && c <= 'F') d = c - 'A' + 10;
    if (d < 0) return std::nullopt;
    v = v << 4 | uint64_t(d);
  }
  return v;
}

}  // namespace

uint64_t tensor_checksum(const std::string& name, const Tensor& t) {
  XXH3_state_t st;
  XXH3_INITSTATE(&st);
  XXH3_64bits_reset(&st);
  update_text(st, name);
  update_text(st, dtype_name(t.dtype()));
  update_u64(st, t.shape().size());
  for (const int64_t d : t.shape()) update_u64(st, uint64_t(d));
  if (t.nbytes() > 0) XXH3_64bits_update(&st, t.raw(), t.nbytes());
  return XXH3_64bits_digest(&st);
}

std::string checksum_hex(uint64_t h) { return fmt::format("{:016x}", h); }

nlohmann::json make_checksum_record(const std::map<std::string, const std::map<std::string, Tensor>*>& files) {
  nlohmann::json by_file = nlohmann::json::object();
  for (const auto& [file, tensors] : files) {
    nlohmann::json sums = nlohmann::json::object();
    for (const auto& [name, t] : *tensors) sums[name] = checksum_hex(tensor_checksum(name, t));
    by_file[file] = std::move(sums);
  }
  return {{"algorithm", kChecksumAlgorithm}, {"files", std::move(by_file)}};
}

TensorChecksums::TensorChecksums(const nlohmann::json& record, const std::string& where, const TensorStore& store,
                                 const fs::path& dir)
    : has_record_(true), dir_(dir) {
  constexpr const char* kWritten = "as kq quantize writes it";
  if (!record.is_object())
    raise<FormatError>("{} must be an object {{\"algorithm\": \"{}\", \"files\": {{file: {{tensor: checksum}}}}}} "
                       "({}), not {}; remove the key to load the folder unchecked",
                       where, kChecksumAlgorithm, kWritten, json_excerpt(record));
  for (const auto& [key, v] : record.items())
    if (key != "algorithm" && key != "files")
      raise<FormatError>("{}: unknown key '{}' (the record has \"algorithm\" and \"files\")", where,
                         text_excerpt(key));
  const auto alg = record.find("algorithm");
  if (alg == record.end()) raise<FormatError>("{}.algorithm is missing (\"{}\")", where, kChecksumAlgorithm);
  if (!alg->is_string() || alg->get_ref<const std::string&>() != kChecksumAlgorithm)
    raise<FormatError>("{}.algorithm is {}; this kq verifies \"{}\" checksums only", where, json_excerpt(*alg),
                       kChecksumAlgorithm);
  const auto files = record.find("files");
  if (files == record.end()) raise<FormatError>("{}.files is missing", where);
  if (!files->is_object())
    raise<FormatError>("{}.files must be an object {{file: {{tensor: checksum}}}}, not {}", where,
                       json_excerpt(*files));

  // The store's tensors by file, the file as the record names it (relative to the folder).
  std::map<std::string, std::set<std::string>> held;
  for (const std::string& name : store.names()) {
    const fs::path file(store.file_of(name));
    const fs::path relative = file.lexically_relative(dir);
    held[relative.empty() || *relative.begin() == ".." ? file.generic_string() : relative.generic_string()].insert(
        name);
  }
  for (const auto& [file, sums] : files->items()) {
    const std::string key = fmt::format("{}.files['{}']", where, text_excerpt(file));
    const auto h = held.find(file);
    if (h == held.end())
      raise<FormatError>("{}: the folder has no such safetensors file holding tensors (the record lists the files kq "
                         "wrote; the folder's weights were replaced or moved)",
                         key);
    if (!sums.is_object())
      raise<FormatError>("{} must be an object {{tensor: checksum}}, not {}", key, json_excerpt(sums));
    for (const auto& [name, sum] : sums.items()) {
      const std::string shown = name_excerpt(name);
      if (!h->second.count(name))
        raise<FormatError>("{}['{}']: {} holds no tensor of that name (renamed or removed after kq wrote it)", key,
                           shown, file);
      const std::optional<uint64_t> value = sum.is_string() ? parse_hex16(sum.get<std::string>()) : std::nullopt;
      if (!value)
        raise<FormatError>("{}['{}'] must be a string of 16 hexadecimal digits, not {}", key, shown,
                           json_excerpt(sum));
      expected_[name] = Expected{file, *value};
    }
    for (const std::string& name : h->second)
      if (!expected_.count(name))
        raise<FormatError>("{}: tensor '{}' of {} has no checksum (a tensor kq did not write, or a record edited)",
                           key, name_excerpt(name), file);
  }
  for (const auto& [file, names] : held)
    if (!files->contains(file))
      raise<FormatError>("{}.files has no entry for {} (holding tensor '{}'), a file kq did not write", where, file,
                         name_excerpt(*names.begin()));
}

void TensorChecksums::verify(const std::string& name, const Tensor& t) {
  if (!has_record_ || verified_.count(name)) return;
  const auto it = expected_.find(name);
  if (it == expected_.end())  // the constructor matched the record to the store's tensors
    raise<FormatError>("{}: tensor '{}' has no checksum", dir_.string(), name_excerpt(name));
  const uint64_t got = tensor_checksum(name, t);
  mismatched_ = got != it->second.checksum;
  if (mismatched_)
    raise<FormatError>("{}: {}: tensor '{}': checksum mismatch: the file was changed after kq wrote it (config.json "
                       "quantization_config.checksums records {} for its name, dtype, shape and bytes; they now hash "
                       "to {} as {} {}); quantize the model again, or restore the folder",
                       dir_.string(), it->second.file, name_excerpt(name), checksum_hex(it->second.checksum),
                       checksum_hex(got), dtype_name(t.dtype()), shape_str(t.shape()));
  verified_.insert(name);
}

}  // namespace kq::io
