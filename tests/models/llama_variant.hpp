#pragma once
// A copy of the shared llama-small (config.json changed by the test, the weights copied as they are or with
// tensors added or removed) in a temporary folder, for tests of config variants (RoPE scaling, model_type
// mistral, qwen2) that compare its logits with the original's. The shared folder itself is never written.
#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <span>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "common/test_data.hpp"
#include "io/safetensors.hpp"
#include "kq/dtype.hpp"
#include "kq/model.hpp"
#include "kq/tensor.hpp"

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

/// As above, with model.safetensors written again after `edit_tensors` changed its tensors (name -> tensor,
/// llama-small's BF16 ones to begin with).
inline std::filesystem::path llama_small_variant(
    const std::filesystem::path& dest, const std::function<void(nlohmann::json&)>& edit,
    const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors) {
  const TensorStore store = TensorStore::open_dir(llama_small_dir());
  std::map<std::string, Tensor> tensors;
  for (const std::string& name : store.names()) tensors.emplace(name, store.get(name));
  edit_tensors(tensors);
  llama_small_variant(dest, edit);
  std::filesystem::remove(dest / "model.safetensors");
  write_safetensors(dest / "model.safetensors", tensors);
  return dest;
}

/// BF16 (as Qwen2 checkpoints store them) q/k/v_proj biases for every layer of llama-small, named as in the
/// checkpoint ("model.layers.N.self_attn.q_proj.bias"): values in [-1, 1) from `seed`, or all zero when
/// `seed` is 0.
inline std::map<std::string, Tensor> llama_small_qkv_biases(uint64_t seed) {
  constexpr int64_t kLayers = 4, kQ = 8 * 32, kKv = 4 * 32;  // llama-small: 8 heads, 4 kv heads, head_dim 32
  std::map<std::string, Tensor> out;
  uint64_t state = seed;
  for (int64_t l = 0; l < kLayers; ++l)
    for (const auto& [proj, n] : {std::pair{"q_proj", kQ}, std::pair{"k_proj", kKv}, std::pair{"v_proj", kKv}}) {
      std::vector<float> v(size_t(n), 0.0f);
      if (seed != 0)
        for (float& x : v) {
          uint64_t z = (state += 0x9E3779B97F4A7C15ull);  // splitmix64
          z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
          z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
          x = float(double((z ^ (z >> 31)) >> 11) * 0x1.0p-52 - 1.0);
        }
      Tensor b = Tensor::empty(DType::BF16, {n});
      convert_from_f32(DType::BF16, v.data(), b.mutable_data<uint16_t>(), v.size());
      out.emplace(fmt::format("model.layers.{}.self_attn.{}.bias", l, proj), std::move(b));
    }
  return out;
}

/// llama-small as model_type qwen2 (architectures Qwen2ForCausalLM; no attention_bias / mlp_bias keys, which
/// Qwen2Config does not have) with `biases` (llama_small_qkv_biases) added to its tensors, then `edit` (when
/// given) run on the config and `edit_tensors` on the tensors.
inline std::filesystem::path llama_small_as_qwen2(
    const std::filesystem::path& dest, const std::map<std::string, Tensor>& biases,
    const std::function<void(nlohmann::json&)>& edit = {},
    const std::function<void(std::map<std::string, Tensor>&)>& edit_tensors = {}) {
  return llama_small_variant(
      dest,
      [&](nlohmann::json& j) {
        j["model_type"] = "qwen2";
        j["architectures"] = {"Qwen2ForCausalLM"};
        j.erase("attention_bias");
        j.erase("mlp_bias");
        if (edit) edit(j);
      },
      [&](std::map<std::string, Tensor>& t) {
        for (const auto& [name, b] : biases) t[name] = b;
        if (edit_tensors) edit_tensors(t);
      });
}

/// The Llama form of llama_small_as_qwen2(dest, biases): model_type llama with "attention_bias": true, the
/// same q/k/v biases and an all-zero o_proj bias (BF16) in every layer.
inline std::filesystem::path llama_small_with_attention_biases(const std::filesystem::path& dest,
                                                               const std::map<std::string, Tensor>& biases) {
  return llama_small_variant(
      dest, [](nlohmann::json& j) { j["attention_bias"] = true; },
      [&](std::map<std::string, Tensor>& t) {
        for (const auto& [name, b] : biases) t[name] = b;
        for (int l = 0; l < 4; ++l) {
          Tensor zero = Tensor::empty(DType::BF16, {256});
          std::fill_n(zero.mutable_data<uint16_t>(), 256, uint16_t(0));
          t[fmt::format("model.layers.{}.self_attn.o_proj.bias", l)] = std::move(zero);
        }
      });
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
