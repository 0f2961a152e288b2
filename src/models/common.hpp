#pragma once
// Pieces shared by the architectures and the CPU backend: config checks,
// KV-cache writes, residual adds, grow-once scratch buffers, and the
// per-architecture factories.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/model.hpp"
#include "models/weights.hpp"

namespace kq::models {

/// Checks that `c` describes a model this code can run (positive sizes, head
/// counts that divide, GPT-2: hidden = heads·head_dim and kv heads = heads;
/// Llama architectures: even head_dim, a rotary_dim of 0 or even in [2, head_dim], positive rope_theta, a valid
/// rope_scaling;
/// a supported activation; sliding_window >= 0; sliding_layers empty or one flag per layer; soft-capping values
/// 0 (none) or positive within float32's range). `where` names the config in
/// messages. Throws FormatError when `from_file`, else InvalidArgument;
/// Unsupported for an activation this code does not implement.
void check_config(const ModelConfig& c, const std::string& where, bool from_file);

/// Copies the keys and values of n new tokens into layer `layer` of the cache
/// at positions pos0 .. pos0+n−1. k, v: token i's kv_heads·head_dim values at
/// k + i·row_stride (heads adjacent). The caller checked the capacity.
void store_kv(KVCache& cache, int64_t layer, int64_t pos0, int64_t n, const float* k, const float* v,
              int64_t row_stride);

/// x[i] += y[i] for n floats (the residual connection).
void add_inplace(float* x, const float* y, int64_t n, int threads);

/// x[i] = cap · tanh(x[i] / cap) for n floats (Gemma 2's final_logit_softcapping on the logits, as
/// Gemma2ForCausalLM.forward: divide, tanh, multiply; F32). cap > 0.
void softcap_inplace(float* x, int64_t n, float cap, int threads);

/// An F32 buffer that only ever grows, so steady-state decode allocates nothing.
class Scratch {
 public:
  float* get(size_t n) {
    if (buf_.size() < n) buf_.resize(n);
    return buf_.data();
  }

 private:
  std::vector<float> buf_;
};

/// The unquantized lm_head over `weight` [vocab, hidden] as read by
/// WeightSource::held (a tied one: over the token embedding table, sharing
/// it): a 16-bit op (make_linear_w16) for a BF16/F16 weight, else an FP32 op
/// (make_linear_f32) recording `disk_dtype`. Throws as those.
std::unique_ptr<Linear> make_dense_lm_head(Tensor weight, DType disk_dtype);

/// The architectures (src/models/gpt2.cpp, src/models/llama.cpp). `c` has been
/// checked; `source_dir` is empty for random weights; `transform` (may be
/// empty) is applied to every linear layer as it is built.
std::unique_ptr<Model> make_gpt2(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                                 const std::filesystem::path& source_dir, const LinearTransform& transform);
std::unique_ptr<Model> make_llama(const ModelConfig& c, WeightSource& w, const ExecContext& ctx,
                                  const std::filesystem::path& source_dir, const LinearTransform& transform);

}  // namespace kq::models
