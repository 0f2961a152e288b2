#pragma once
// Safetensors reading (single file and sharded) and atomic writing.
// Format: https://github.com/huggingface/safetensors — 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the data section; offsets are relative to it.
//
// Reading is strict about everything that could cause an out-of-bounds read
// or a silent misread (see open_file) and, like the reference reader, about
// the format's rule that the data section is entirely indexed with no holes
// (no gap between tensors, no trailing bytes: this prevents polyglot files).
// Tensors may sit at
// unaligned file offsets (the header length need not be a multiple of 8);
// such tensors are copied once into aligned heap memory at open time, so
// Tensor::data<T>() is always safe to use. Aligned tensors (every file written
// by transformers/safetensors or by write_safetensors) are zero-copy views.
#include <filesystem>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kq/tensor.hpp"

namespace kq {

/// Tensors of one or more safetensors files, memory-mapped (zero copy).
class TensorStore {
 public:
  /// Opens a model folder: DIR/model.safetensors if it exists (as Hugging
  /// Face transformers does), else DIR/model.safetensors.index.json (sharded).
  /// Throws FormatError naming the file; with neither, naming the folder and
  /// what it has instead (pytorch_model.bin; shard files such as
  /// model-00001-of-00002.safetensors without their index). For an index: every tensor its
  /// "weight_map" {tensor: shard file} names must be in that shard, and the
  /// shards' other tensors are loaded too; errors for a missing shard (or one
  /// that is not a regular file), a tensor absent from its shard, a tensor
  /// held by two shards, shard names that are absolute or contain "..", a
  /// UTF-8 byte-order mark before the index's JSON (transformers refuses it),
  /// and any invalid shard (named in the message). Shard names are compared
  /// lexically normalized: "./a.safetensors" and "a.safetensors" are one shard.
  static TensorStore open_dir(const std::filesystem::path& dir);
  /// Opens one .safetensors file. Validates the header fully: length bounds,
  /// JSON, dtypes, dtype × shape vs byte size, offsets inside the file, no
  /// overlaps (checked on ranges sorted by begin), no holes (sorted by
  /// data_offsets, the first tensor starts at data offset 0, each next one
  /// where the one before ended, the last ends at the end of the file; an
  /// empty tensor sits on such a boundary), duplicate keys, shape entries
  /// that are negative, non-integer or overflow int64 when multiplied. Header
  /// length cap: 100,000,000 bytes (as the reference). Throws FormatError
  /// naming the file (and tensor); for a hole or trailing bytes, the byte
  /// range (data-section and file offsets) and the tensors around it.
  static TensorStore open_file(const std::filesystem::path& file);

  /// true when a tensor of that exact name exists.
  bool contains(const std::string& name) const;
  /// The tensor `name` (a read-only view of the mapping). Throws FormatError
  /// naming the tensor (and the folder) when absent.
  Tensor get(const std::string& name) const;
  /// All tensor names, sorted.
  std::vector<std::string> names() const;
  /// "__metadata__" entries merged over all files.
  const std::map<std::string, std::string>& metadata() const { return metadata_; }
  /// File a tensor came from (for error messages).
  std::string file_of(const std::string& name) const;

 private:
  struct Entry {
    Tensor tensor;
    std::string file;
  };
  std::map<std::string, Entry> tensors_;
  std::map<std::string, std::string> metadata_;
  std::string source_;
};

/// Writes `tensors` (name -> dense tensor) to `path` atomically: the data goes
/// to a temporary file in the same folder, is fsync'ed, then renamed over
/// `path`. On any error the temporary is removed, `path` is untouched, and
/// Error is thrown naming the path (InvalidArgument for an undefined tensor,
/// an empty or "__metadata__" name, or names/metadata that are not UTF-8).
/// Layout (valid under the format's no-holes rule, which open_file and the
/// reference reader enforce: the tensors cover the data section with no gaps
/// and nothing follows the last one): the JSON header is
/// padded with spaces so the data section starts on an 8-byte boundary;
/// tensors follow back to back, ordered by the alignment their byte size
/// allows (sizes that are multiples of 8 first, then 4, 2, 1; by name within
/// each group), so every tensor whose size is a multiple of 8 bytes starts on
/// an 8-byte boundary and every tensor on a multiple of its element size.
void write_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kq
