#pragma once
// Per-tensor checksums of a kq quantized folder: what `kq quantize` records in
// config.json's quantization_config.checksums and what the loader verifies each
// tensor against as it reads it (models/weights.cpp). They catch bytes changed
// after kq wrote the folder (bit rot, a truncated file padded back to its size)
// and header edits that keep the file valid: two same-shaped tensors swapped,
// a tensor relabelled with another dtype or shape of the same byte size, renamed,
// added or removed. They are not a signature: whoever edits the weights can
// edit config.json too.
//
// The record (format_version 1 of the folder stays: older folders have none):
//   "checksums": {"algorithm": "xxh3-64",
//                 "files": {"model.safetensors": {"<tensor name>": "<16 hex digits>", ...}}}
// one entry per safetensors file of the folder (its path relative to the
// folder), listing every tensor of that file and nothing else.
#include <cstdint>
#include <filesystem>
#include <map>
#include <set>
#include <string>

#include <nlohmann/json.hpp>

#include "io/safetensors.hpp"
#include "kq/tensor.hpp"

namespace kq::io {

/// The value of the record's "algorithm" key: XXH3 64-bit, seed 0 (xxHash 0.8, https://github.com/Cyan4973/xxHash,
/// doc/xxhash_spec.md).
inline constexpr const char* kChecksumAlgorithm = "xxh3-64";

/// The checksum of tensor `name` holding `t` (defined, dense): XXH3-64 (seed 0) of the byte string
///   u64 len(name), name, u64 len(D), D, u64 rank, each dimension as u64, then t's nbytes() data bytes,
/// every u64 little-endian, D the safetensors dtype name (dtype_name: "BF16", "U8", ...). Binding the name, the
/// dtype and the shape makes a swapped or relabelled tensor mismatch although its bytes are intact.
uint64_t tensor_checksum(const std::string& name, const Tensor& t);

/// `h` as the record writes it: 16 lowercase hexadecimal digits.
std::string checksum_hex(uint64_t h);

/// The "checksums" value for a folder whose safetensors files are `files` (path relative to the folder, as
/// "model.safetensors" -> that file's tensors by name); see the record above.
nlohmann::json make_checksum_record(const std::map<std::string, const std::map<std::string, Tensor>*>& files);

/// The checksums of a folder's tensors, read from its record and held against its TensorStore.
class TensorChecksums {
 public:
  /// No record (a folder written by an older kq, or not a kq folder): verify() checks nothing.
  TensorChecksums() = default;

  /// Reads `record` (the value of config.json's quantization_config.checksums) for the folder `dir` whose
  /// tensors `store` holds (TensorStore::open_dir(dir)). `where` names the record in messages
  /// ("<dir>/config.json: quantization_config.checksums"). Throws FormatError naming `where` and the key when
  /// the record is not as above: not an object, an unknown or missing key, an "algorithm" other than "xxh3-64",
  /// "files" not an object, a file entry not an object, a checksum that is not a string of 16 hexadecimal
  /// digits; a file of the store that the record does not list, or one it lists that the folder does not read;
  /// a tensor of a file that the file's entry does not list, or one it lists that the file does not hold.
  TensorChecksums(const nlohmann::json& record, const std::string& where, const TensorStore& store,
                  const std::filesystem::path& dir);

  /// Whether the folder has a record (verify() checks tensors).
  bool recorded() const { return has_record_; }
  /// How many tensors the record lists.
  size_t size() const { return expected_.size(); }
  /// How many tensors verify() has hashed so far.
  size_t verified() const { return verified_.size(); }
  /// Whether a verify() call has thrown its mismatch (a caller that adds context to a loader's FormatError rethrows
  /// that one unchanged: it already names the folder, file and tensor).
  bool mismatched() const { return mismatched_; }

  /// Checks tensor `name` (`t`, as the store gives it: a view of the mapped bytes) against the record the first
  /// time it is asked for, hashing its bytes once; later calls for the same name return at once. Nothing to do
  /// without a record. Throws FormatError "<dir>: <file>: tensor '<name>': checksum mismatch: the file was
  /// changed after kq wrote it (...)" naming the recorded and the computed value. Not thread-safe.
  void verify(const std::string& name, const Tensor& t);

 private:
  struct Expected {
    std::string file;  // as the record names it ("model.safetensors")
    uint64_t checksum = 0;
  };
  bool has_record_ = false;
  bool mismatched_ = false;
  std::filesystem::path dir_;
  std::map<std::string, Expected> expected_;  // tensor name -> its file and checksum
  std::set<std::string> verified_;
};

}  // namespace kq::io
