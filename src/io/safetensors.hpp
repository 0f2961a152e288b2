#pragma once
// Safetensors reading (single file and sharded) and atomic writing.
// Format: https://github.com/huggingface/safetensors — 8-byte little-endian
// header length N, N bytes of JSON {name: {dtype, shape, data_offsets:[b,e]},
// "__metadata__": {str: str}}, then the data section; offsets are relative to it.
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
  /// Opens a model folder: DIR/model.safetensors.index.json (sharded) if it
  /// exists, else DIR/model.safetensors. Throws FormatError naming the file.
  static TensorStore open_dir(const std::filesystem::path& dir);
  /// Opens one .safetensors file. Validates the header fully: length bounds,
  /// JSON, dtypes, dtype × shape vs byte size, offsets inside the file, no
  /// overlaps. Throws FormatError naming the file (and tensor).
  static TensorStore open_file(const std::filesystem::path& file);

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
/// Error is thrown naming the path.
void write_safetensors(const std::filesystem::path& path, const std::map<std::string, Tensor>& tensors,
                       const std::map<std::string, std::string>& metadata = {});

}  // namespace kq
