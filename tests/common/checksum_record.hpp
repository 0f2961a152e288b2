#pragma once
// For tests that edit the tensors of a saved kq folder to reach a check behind
// the checksums (a bad scale, a missing tensor): the folder's checksum record
// (config.json quantization_config.checksums) written again for the tensors as
// they now are, as if kq had written them so.
#include <filesystem>
#include <fstream>
#include <map>
#include <string>

#include <nlohmann/json.hpp>

#include "common/test_util.hpp"
#include "io/safetensors.hpp"
#include "io/tensor_checksums.hpp"

namespace kq::testing {

/// Replaces dir/config.json's quantization_config.checksums with the checksums of dir/model.safetensors's tensors
/// as they are now (a folder without a record gets none: nothing is added).
inline void record_checksums_again(const std::filesystem::path& dir) {
  nlohmann::json cfg = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  if (!cfg.contains("quantization_config") || !cfg["quantization_config"].contains("checksums")) return;
  std::map<std::string, Tensor> tensors;
  {
    const TensorStore store = TensorStore::open_file(dir / "model.safetensors");
    for (const std::string& n : store.names()) tensors[n] = store.get(n).clone();
  }
  cfg["quantization_config"]["checksums"] = io::make_checksum_record({{"model.safetensors", &tensors}});
  write_text(dir / "config.json", cfg.dump(2));
}

}  // namespace kq::testing
