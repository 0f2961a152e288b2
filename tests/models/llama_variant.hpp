#pragma once
// A copy of the shared llama-small (config.json changed by the test, the weights copied as they are) in a
// temporary folder, for tests of config variants (RoPE scaling, model_type mistral) that compare its logits
// with the original's. The shared folder itself is never written.
#include <filesystem>
#include <fstream>
#include <functional>
#include <span>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "kq/model.hpp"

namespace kq::testing {

/// The shared llama-small folder.
inline std::filesystem::path llama_small_dir() { return shared_dir() / "models/llama-small"; }

/// Copies llama-small's config.json (after `edit`) and model.safetensors into `dest` and returns `dest`.
/// The caller checked that the shared model is there (KQ_REQUIRE_SHARED).
inline std::filesystem::path llama_small_variant(const std::filesystem::path& dest,
                                                 const std::function<void(nlohmann::json&)>& edit) {
  const std::filesystem::path src = llama_small_dir();
  std::ifstream in(src / "config.json");
  nlohmann::json j = nlohmann::json::parse(in);
  edit(j);
  std::filesystem::create_directories(dest);
  std::ofstream(dest / "config.json") << j.dump(2);
  std::filesystem::copy_file(src / "model.safetensors", dest / "model.safetensors");
  return dest;
}

/// Logits [n, vocab] of a CPU run of `tokens` (one prefill) through the model in `dir`.
inline std::vector<float> all_logits(const std::filesystem::path& dir, std::span<const int32_t> tokens) {
  auto m = Model::load(dir, ExecContext{Device::CPU, 2});
  std::vector<float> out(tokens.size() * size_t(m->config().vocab_size));
  KVCache cache = m->make_cache(int64_t(tokens.size()));
  m->forward(tokens, cache, out.data(), /*all_logits=*/true);
  return out;
}

/// n token ids of llama-small's vocabulary, spread over it.
inline std::vector<int32_t> spread_ids(size_t n, int64_t vocab = 8192) {
  std::vector<int32_t> v(n);
  for (size_t i = 0; i < n; ++i) v[i] = int32_t((i * 7919 + 13) % size_t(vocab));
  return v;
}

}  // namespace kq::testing
