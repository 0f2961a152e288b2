#pragma once
// A safetensors file opened for editing in tests (tampering with a saved
// folder): its header as JSON and its data section as bytes, written back
// with the header re-padded to an 8-byte boundary (data offsets are relative
// to the data section, so they stay valid).
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "common/test_util.hpp"

namespace kq::testing {

struct EditableSafetensors {
  nlohmann::json header;  ///< {name: {dtype, shape, data_offsets}, "__metadata__": {...}}
  std::string data;       ///< the data section

  /// Reads `file` (a valid safetensors file; a test failure otherwise).
  explicit EditableSafetensors(const std::filesystem::path& file) {
    const std::string bytes = read_all(file);
    uint64_t n = 0;
    if (bytes.size() < 8) {
      ADD_FAILURE() << file << ": too short";
      return;
    }
    std::memcpy(&n, bytes.data(), 8);
    header = nlohmann::json::parse(bytes.substr(8, size_t(n)));
    data = bytes.substr(8 + size_t(n));
  }

  /// Writes the (edited) file to `file`.
  void write(const std::filesystem::path& file) const {
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    const uint64_t n = text.size();
    std::memcpy(out.data(), &n, 8);
    write_text(file, out + text + data);
  }

  /// The offset in `data` of tensor `name`'s first byte.
  size_t begin(const std::string& name) const { return header.at(name).at("data_offsets").at(0).get<size_t>(); }
  /// The byte size of tensor `name`.
  size_t size(const std::string& name) const {
    return header.at(name).at("data_offsets").at(1).get<size_t>() - begin(name);
  }
};

}  // namespace kq::testing
