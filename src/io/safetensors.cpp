// Safetensors reading: header validation and zero-copy tensor views.
// Validation follows the reference implementation
// (https://github.com/huggingface/safetensors, safetensors/src/tensor.rs):
// header length <= 100,000,000 bytes, JSON object of {dtype, shape,
// data_offsets}, byte size == dtype size × shape product, offsets inside the
// data section, no two tensors sharing bytes, and — as the format's
// specification requires ("the byte buffer needs to be entirely indexed, and
// cannot contain holes. This prevents the creation of polyglot files") — no
// gap between tensors, no byte before the first or after the last.
#include "io/safetensors.hpp"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <optional>
#include <string_view>
#include <vector>

#include "core/mapped_regions.hpp"
#include "io/file_kind.hpp"
#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kq/error.hpp"

namespace kq {
namespace fs = std::filesystem;
using nlohmann::json;

static_assert(std::endian::native == std::endian::little, "safetensors reading assumes a little-endian host");

namespace {

constexpr uint64_t kMaxHeaderBytes = 100'000'000;  // same cap as the reference implementation

/// One tensor entry of a parsed header, offsets relative to the data section.
struct HeaderEntry {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  uint64_t begin = 0, end = 0;
};

/// A mapped, fully validated safetensors file.
struct ParsedFile {
  std::shared_ptr<MappedFile> map;
  uint64_t data_start = 0;  // 8 + N
  std::vector<HeaderEntry> entries;
  std::map<std::string, std::string> metadata;
};

/// A JSON number that is a non-negative integer, else nullopt (floats, negatives, other types).
std::optional<uint64_t> as_u64(const json& v) {
  if (v.is_number_unsigned()) return v.get<uint64_t>();
  if (v.is_number_integer()) {
    const int64_t i = v.get<int64_t>();
    if (i >= 0) return uint64_t(i);
  }
  return std::nullopt;
}

/// Why `v` (for which as_u64 gave nullopt) is no unsigned 64-bit integer, as
/// a phrase after the value's name. The JSON reader keeps integers beyond the
/// unsigned 64-bit range, and numbers with a fraction or exponent, as doubles:
/// those are never printed in floating-point form (18446744073709551616 would
/// read 1.8446744073709552e+19, 1e30 as 1e+30), only a small fraction is shown.
std::string why_not_u64(const json& v) {
  constexpr const char* kNot = "is not a valid unsigned 64-bit integer";
  if (v.is_number_integer()) return fmt::format("{}: it is negative ({})", kNot, v.get<int64_t>());
  if (v.is_number_float()) {
    const double d = v.get<double>();
    const std::string text = fmt::format("{}", d);
    const bool plain = text.find_first_of("eEn") == std::string::npos;  // no exponent, inf or nan
    const std::string shown = plain ? std::string(" (") + text + ")" : "";
    if (d >= 18446744073709551616.0)
      return fmt::format("{}: it is above 18446744073709551615, the largest one", kNot);
    if (d < 0) return fmt::format("{}: it is negative{}", kNot, shown);
    if (d != std::floor(d)) return fmt::format("{}: it is not a whole number{}", kNot, shown);
    return fmt::format("{}: it is written in floating-point form (a decimal point or an exponent)", kNot);
  }
  if (v.is_string()) return fmt::format("{}: it is a string", kNot);
  if (v.is_boolean()) return fmt::format("{}: it is a boolean", kNot);
  if (v.is_null()) return fmt::format("{}: it is null", kNot);
  return fmt::format("{}: it is {}", kNot, v.is_array() ? "an array" : "an object");
}

HeaderEntry parse_entry(const std::string& file, const std::string& name, const json& v) {
  const std::string shown = io::name_excerpt(name);  // for messages: a name may be 100,000 characters long
  if (!v.is_object()) raise<FormatError>("{}: tensor '{}': header entry is not a JSON object", file, shown);
  HeaderEntry e;
  e.name = name;

  const auto dt = v.find("dtype");
  if (dt == v.end() || !dt->is_string())
    raise<FormatError>("{}: tensor '{}': missing or non-string \"dtype\"", file, shown);
  const auto parsed = parse_dtype(dt->get_ref<const std::string&>());
  if (!parsed)
    raise<FormatError>("{}: tensor '{}': unknown dtype '{}'", file, shown, dt->get_ref<const std::string&>());
  e.dtype = *parsed;

  const auto sh = v.find("shape");
  if (sh == v.end() || !sh->is_array())
    raise<FormatError>("{}: tensor '{}': missing or non-array \"shape\"", file, shown);
  constexpr uint64_t kMaxDim = uint64_t(std::numeric_limits<int64_t>::max());
  // Every entry first, so that a shape printed below holds only integers.
  for (size_t i = 0; i < sh->size(); ++i) {
    const json& d = (*sh)[i];
    const auto u = as_u64(d);
    if (!u)
      raise<FormatError>("{}: tensor '{}': shape entry {} (counting from 0) {}", file, shown, i,
                         why_not_u64(d));
    if (*u > kMaxDim)
      raise<FormatError>("{}: tensor '{}': shape entry {} (counting from 0) is {}, above the largest "
                         "dimension {}",
                         file, shown, i, *u, kMaxDim);
    e.shape.push_back(int64_t(*u));
  }
  uint64_t numel = 1;
  for (const int64_t dim : e.shape)
    if (__builtin_mul_overflow(numel, uint64_t(dim), &numel) || numel > kMaxDim)
      raise<FormatError>("{}: tensor '{}': shape {} overflows the element count", file, shown, io::json_excerpt(*sh));
  uint64_t nbytes = 0;
  if (__builtin_mul_overflow(numel, uint64_t(dtype_size(e.dtype)), &nbytes))
    raise<FormatError>("{}: tensor '{}': shape {} overflows the byte size", file, shown, io::json_excerpt(*sh));

  const auto off = v.find("data_offsets");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    raise<FormatError>("{}: tensor '{}': \"data_offsets\" must be an array [begin, end]", file, shown);
  const auto b = as_u64((*off)[0]), en = as_u64((*off)[1]);
  if (!b)
    raise<FormatError>("{}: tensor '{}': data_offsets begin (the first) {}", file, shown,
                       why_not_u64((*off)[0]));
  if (!en)
    raise<FormatError>("{}: tensor '{}': data_offsets end (the second) {}", file, shown,
                       why_not_u64((*off)[1]));
  if (*b > *en)
    raise<FormatError>("{}: tensor '{}': data_offsets {}: begin is after end", file, shown, io::json_excerpt(*off));
  e.begin = *b;
  e.end = *en;
  if (e.end - e.begin != nbytes)
    raise<FormatError>("{}: tensor '{}': data_offsets {} span {} bytes but dtype {} × shape {} needs {}", file,
                       name, io::json_excerpt(*off), e.end - e.begin, dtype_name(e.dtype), shape_str(e.shape), nbytes);
  return e;
}

/// "tensor 'a' [b, e]", or `none` when `e` is null (for messages).
std::string describe(const HeaderEntry* e, const char* none) {
  return e ? fmt::format("tensor '{}' [{}, {}]", io::name_excerpt(e->name), e->begin, e->end) : std::string(none);
}

/// Rejects two tensors sharing bytes: sorted by begin, each non-empty range
/// must start at or after the end of the one before (once sorted, no earlier
/// range ends further, or it would overlap that one first). Empty tensors
/// occupy no bytes and are placed by check_coverage.
void check_overlaps(const std::string& file, const std::vector<HeaderEntry>& entries) {
  std::vector<const HeaderEntry*> order;
  for (const auto& e : entries)
    if (e.end > e.begin) order.push_back(&e);
  std::sort(order.begin(), order.end(),
            [](const HeaderEntry* a, const HeaderEntry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < order.size(); ++i) {
    if (order[i]->begin < order[i - 1]->end)
      raise<FormatError>("{}: tensor '{}': data_offsets [{}, {}] overlap tensor '{}' [{}, {}]", file,
                         io::name_excerpt(order[i]->name), order[i]->begin, order[i]->end,
                         io::name_excerpt(order[i - 1]->name),
                         order[i - 1]->begin, order[i - 1]->end);
  }
}

/// Rejects data-section bytes no tensor indexes (the specification's "cannot
/// contain holes"): with the ranges sorted by (begin, end), the first starts
/// at 0, each starts where the one before ended, and the last ends at the end
/// of the file. An empty tensor must sit on such a boundary too (as in the
/// reference reader), not inside another tensor's bytes. Ranges are known
/// not to overlap (check_overlaps) and to lie inside the data section.
/// Offsets in messages are relative to the data section; the file offsets
/// (data_start + offset) are given for the hole itself.
void check_coverage(const std::string& file, uint64_t data_start, uint64_t data_size,
                    const std::vector<HeaderEntry>& entries) {
  std::vector<const HeaderEntry*> order;
  for (const auto& e : entries) order.push_back(&e);
  std::sort(order.begin(), order.end(), [](const HeaderEntry* a, const HeaderEntry* b) {
    return a->begin != b->begin ? a->begin < b->begin : a->end < b->end;
  });
  constexpr const char* kRule =
      "the safetensors format requires the tensors to cover the data section with no holes";
  uint64_t pos = 0;                  // end of the bytes covered so far
  const HeaderEntry* last = nullptr;  // the tensor that ends at pos (null: none yet)
  for (const HeaderEntry* e : order) {
    if (e->begin > pos)
      raise<FormatError>("{}: data bytes [{}, {}) (file offsets [{}, {})) belong to no tensor: a hole between "
                         "{} and tensor '{}' [{}, {}] ({})",
                         file, pos, e->begin, data_start + pos, data_start + e->begin,
                         describe(last, "the start of the data section"), io::name_excerpt(e->name), e->begin,
                         e->end, kRule);
    if (e->begin < pos)  // only an empty tensor can start before pos: the others do not overlap
      raise<FormatError>("{}: tensor '{}': empty tensor at data offset {} lies inside {} (an empty tensor must "
                         "sit between two tensors, as the reference reader requires)",
                         file, io::name_excerpt(e->name), e->begin, describe(last, "another tensor"));
    if (e->end > pos || !last) last = e;
    pos = e->end;
  }
  if (pos < data_size && !last)
    raise<FormatError>("{}: data bytes [0, {}) (file offsets [{}, {})) belong to no tensor: the header lists no "
                       "tensor but the data section is not empty ({})",
                       file, data_size, data_start, data_start + data_size, kRule);
  if (pos < data_size)
    raise<FormatError>("{}: data bytes [{}, {}) (file offsets [{}, {})) belong to no tensor: {} trailing bytes "
                       "after the last tensor, {} ({})",
                       file, pos, data_size, data_start + pos, data_start + data_size, data_size - pos,
                       describe(last, ""), kRule);
}

ParsedFile parse_file(const fs::path& path) {
  const std::string file = path.string();
  ParsedFile pf;
  // stat before open: opening a FIFO (named pipe) for reading blocks until a
  // writer comes, and a device would be read without end.
  if (const auto why = io::why_not_regular_file(path)) raise<FormatError>("{}: {}", file, *why);
  pf.map = MappedFile::open(file);  // FormatError naming the file when it cannot be opened
  const auto* base = pf.map->data();
  const uint64_t size = pf.map->size();
  if (size < 8) raise<FormatError>("{}: file is {} bytes, too short for a safetensors header", file, size);
  uint64_t n = 0;
  std::memcpy(&n, base, 8);  // little-endian u64
  if (n > kMaxHeaderBytes)
    raise<FormatError>("{}: header length {} exceeds the {} byte limit", file, n, kMaxHeaderBytes);
  if (n > size - 8)
    raise<FormatError>("{}: header length {} does not fit in the file: {} bytes after its 8-byte length field "
                       "(truncated file?)",
                       file, n, size - 8);
  if (n < 2 || base[8] != std::byte{'{'})
    raise<FormatError>("{}: header does not start with a JSON object", file);
  pf.data_start = 8 + n;
  const uint64_t data_size = size - pf.data_start;

  const json h =
      io::parse_json_strict(std::string_view(reinterpret_cast<const char*>(base + 8), size_t(n)), file, 8);
  if (!h.is_object()) raise<FormatError>("{}: header is not a JSON object", file);

  for (const auto& [key, v] : h.items()) {
    if (key == "__metadata__") {
      if (v.is_null()) continue;
      if (!v.is_object()) raise<FormatError>("{}: \"__metadata__\" is not a JSON object", file);
      for (const auto& [mk, mv] : v.items()) {
        if (!mv.is_string())
          raise<FormatError>("{}: \"__metadata__\" entry '{}' is not a string", file, mk);
        pf.metadata.emplace(mk, mv.get<std::string>());
      }
      continue;
    }
    HeaderEntry e = parse_entry(file, key, v);
    if (e.end > data_size)
      raise<FormatError>("{}: tensor '{}': data_offsets [{}, {}] lie outside the data section of {} bytes",
                         file, key, e.begin, e.end, data_size);
    pf.entries.push_back(std::move(e));
  }

  check_overlaps(file, pf.entries);
  check_coverage(file, pf.data_start, data_size, pf.entries);
  // A SIGBUS in these bytes (the file truncated meanwhile) names the tensor.
  std::vector<core::NamedRange> ranges;
  ranges.reserve(pf.entries.size());
  for (const auto& e : pf.entries)
    if (e.end > e.begin)
      ranges.push_back({size_t(pf.data_start + e.begin), size_t(pf.data_start + e.end), e.name});
  core::name_mapping_regions(base, std::move(ranges));
  return pf;
}

/// A tensor view of a parsed entry. Tensors whose bytes are not aligned to
/// their element size in the file (allowed by the format: the header length
/// need not be a multiple of 8) are copied to aligned heap memory, so typed
/// access through Tensor::data<T>() is always valid.
Tensor make_tensor(const ParsedFile& pf, const HeaderEntry& e) {
  const size_t offset = size_t(pf.data_start + e.begin);
  Tensor t = Tensor::view(pf.map, offset, e.dtype, e.shape);
  if (offset % dtype_size(e.dtype) != 0) return t.clone();  // mmap base is page aligned
  return t;
}

/// Whether `name` is a shard's file name as save_pretrained writes them, "<prefix>-<digits>-of-<digits>.safetensors"
/// ("model-00001-of-00004.safetensors").
bool is_shard_name(std::string_view name) {
  constexpr std::string_view ext = ".safetensors";
  if (!name.ends_with(ext)) return false;
  name.remove_suffix(ext.size());
  // Two runs of digits around "-of-", after a "-".
  const auto digits_back = [&](std::string_view& s) {
    size_t n = 0;
    while (n < s.size() && s[s.size() - 1 - n] >= '0' && s[s.size() - 1 - n] <= '9') ++n;
    s.remove_suffix(n);
    return n > 0;
  };
  if (!digits_back(name) || !name.ends_with("-of-")) return false;
  name.remove_suffix(4);
  return digits_back(name) && name.ends_with("-") && name.size() > 1;
}

/// The shard files in `dir` (is_shard_name), sorted; none when it cannot be listed.
std::vector<std::string> shard_files(const fs::path& dir) {
  std::vector<std::string> out;
  std::error_code ec;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    if (is_shard_name(name)) out.push_back(name);
  }
  std::sort(out.begin(), out.end());
  return out;
}

/// Rejects shard names that escape the model folder; returns the name
/// lexically normalized ("./a" and "sub//a" name the files "a" and "sub/a"),
/// so that two spellings of one shard are one shard.
std::string normal_shard_name(const std::string& index_file, const std::string& shard) {
  const fs::path p(shard);
  bool bad = shard.empty() || p.is_absolute() || p.has_root_path();
  for (const auto& part : p)
    if (part == "..") bad = true;
  if (bad) raise<FormatError>("{}: shard file name '{}' is not a plain relative path", index_file, shard);
  return p.lexically_normal().generic_string();
}

}  // namespace

TensorStore TensorStore::open_file(const fs::path& file) {
  ParsedFile pf = parse_file(file);
  TensorStore ts;
  ts.source_ = file.string();
  ts.metadata_ = pf.metadata;
  for (const auto& e : pf.entries) ts.tensors_.emplace(e.name, Entry{make_tensor(pf, e), ts.source_});
  return ts;
}

TensorStore TensorStore::open_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec))  // not found, a symbolic link loop or a dangling link
    raise<FormatError>("{}: model folder {}", dir.string(), io::why_not_regular_file(dir).value_or("not found"));
  if (!fs::is_directory(dir, ec)) raise<FormatError>("{}: not a folder (expected a model folder)", dir.string());
  const fs::path index = dir / "model.safetensors.index.json";
  const fs::path single = dir / "model.safetensors";
  // Anything at `p`, even a symbolic link leading nowhere (dangling, a loop)
  // or a file that cannot be stat()ed: it is read, and the reading says what
  // is wrong with it (fs::exists said false: "no model.safetensors ...").
  const auto present = [](const fs::path& p) {
    std::error_code link_ec;
    return fs::symlink_status(p, link_ec).type() != fs::file_type::not_found;
  };
  // model.safetensors first, as Hugging Face transformers loads it: a folder
  // holding both reads the single file, not the shards.
  if (present(single)) return open_file(single);
  if (!present(index)) {
    // A PyTorch-pickle checkpoint is the common case: say how to convert it
    // (kq never unpickles: a pickle can run code).
    for (const char* pickle : {"pytorch_model.bin", "pytorch_model.bin.index.json"})
      if (fs::exists(dir / pickle, ec))
        raise<FormatError>(
            "{}: no model.safetensors or model.safetensors.index.json in the folder, only {} (PyTorch pickle, "
            "which kq does not read); convert it with transformers: "
            "AutoModelForCausalLM.from_pretrained(dir).save_pretrained(dir, safe_serialization=True)",
            dir.string(), pickle);
    // Shards without their index: a download that stopped early, or an index left behind.
    if (const std::vector<std::string> shards = shard_files(dir); !shards.empty()) {
      const size_t others = shards.size() - 1;
      raise<FormatError>(
          "{}: found {}{} but no model.safetensors.index.json, which lists the tensors of each shard (an incomplete "
          "download?)",
          dir.string(), io::name_excerpt(shards[0]),
          others == 0 ? std::string() : fmt::format(" and {} other shard file{}", others, others == 1 ? "" : "s"));
    }
    raise<FormatError>("{}: no model.safetensors or model.safetensors.index.json in the folder",
                       dir.string());
  }

  const std::string index_file = index.string();
  const json j = io::load_hf_json_file(index, kMaxHeaderBytes);  // a BOM: transformers' json.load refuses it
  if (!j.is_object()) raise<FormatError>("{}: not a JSON object", index_file);
  const auto wm = j.find("weight_map");
  if (wm == j.end()) raise<FormatError>("{}: missing \"weight_map\" object", index_file);
  if (!wm->is_object())
    raise<FormatError>("{}: \"weight_map\" is not an object (expected {{\"tensor name\": \"file\"}}), it is {}",
                       index_file, io::json_excerpt(*wm));
  if (wm->empty()) raise<FormatError>("{}: \"weight_map\" is empty", index_file);

  // shard file -> tensor names it must hold
  std::map<std::string, std::vector<std::string>> by_shard;
  for (const auto& [name, shard] : wm->items()) {
    if (!shard.is_string())
      raise<FormatError>("{}: tensor '{}': shard name is not a string", index_file, io::name_excerpt(name));
    by_shard[normal_shard_name(index_file, shard.get_ref<const std::string&>())].push_back(name);
  }

  TensorStore ts;
  ts.source_ = dir.string();
  // A tensor a shard holds but the index does not list is loaded too (the
  // file is valid, so it is not dropped unseen); one held by two shards is
  // ambiguous and rejected, whether the index lists it or not.
  std::map<std::string, std::string> holder;  // tensor -> the shard file that holds it
  for (const auto& [shard, names] : by_shard) {
    const fs::path shard_path = dir / shard;
    if (const auto why = io::why_not_regular_file(shard_path))
      raise<FormatError>("{}: shard '{}' (holding tensor '{}') {}", index_file, shard, io::name_excerpt(names.front()),
                         *why);
    const ParsedFile pf = parse_file(shard_path);
    for (const auto& e : pf.entries) {
      const auto [it, fresh] = holder.emplace(e.name, shard_path.string());
      if (!fresh)
        raise<FormatError>("{}: tensor '{}' is held by two shards, '{}' and '{}'", index_file,
                           io::name_excerpt(e.name),
                           it->second, shard_path.string());
    }
    for (const auto& name : names)
      if (const auto it = holder.find(name); it == holder.end() || it->second != shard_path.string())
        raise<FormatError>("{}: tensor '{}' is mapped to shard '{}', which has no such tensor", index_file,
                           io::name_excerpt(name), shard_path.string());
    for (const auto& e : pf.entries)
      ts.tensors_.emplace(e.name, Entry{make_tensor(pf, e), shard_path.string()});
    for (const auto& [k, v] : pf.metadata) ts.metadata_.emplace(k, v);
  }
  return ts;
}

bool TensorStore::contains(const std::string& name) const { return tensors_.count(name) != 0; }

Tensor TensorStore::get(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) raise<FormatError>("{}: no tensor named '{}'", source_, io::name_excerpt(name));
  return it->second.tensor;
}

std::vector<std::string> TensorStore::names() const {
  std::vector<std::string> out;
  out.reserve(tensors_.size());
  for (const auto& [k, v] : tensors_) out.push_back(k);
  return out;
}

std::string TensorStore::file_of(const std::string& name) const {
  const auto it = tensors_.find(name);
  if (it == tensors_.end()) raise<FormatError>("{}: no tensor named '{}'", source_, io::name_excerpt(name));
  return it->second.file;
}

}  // namespace kq
