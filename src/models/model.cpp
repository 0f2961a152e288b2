// kq::Model: loading/creation dispatch, input validation and chunking of
// forward(), linear slots and weight accounting shared by all architectures.
#include "kq/model.hpp"

#include <algorithm>
#include <system_error>

#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kq/error.hpp"
#include "models/common.hpp"
#include "models/weights.hpp"

namespace kq {

namespace fs = std::filesystem;

namespace {
void require_cpu(const ExecContext& ctx) {
  if (ctx.device != Device::CPU)
    raise<Unsupported>("models run on the CPU only for now (device '{}' requested)", device_name(ctx.device));
  if (ctx.threads < 0 || ctx.threads > kMaxThreads)
    raise<InvalidArgument>("--threads must be in [0, {}] (0 = all cores), got {}", kMaxThreads, ctx.threads);
}

size_t disk_dtype_size(const std::string& torch_dtype) {
  if (torch_dtype == "bfloat16" || torch_dtype == "float16" || torch_dtype == "bf16" || torch_dtype == "fp16")
    return 2;
  return 4;
}
}  // namespace

Model::Model(ModelConfig config, ExecContext ctx, fs::path source_dir)
    : config_(std::move(config)), ctx_(ctx), source_dir_(std::move(source_dir)) {}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const fs::path& dir, const ExecContext& ctx) {
  require_cpu(ctx);
  std::error_code ec;
  if (!fs::exists(dir, ec)) raise<FormatError>("{}: model folder not found", dir.string());
  if (!fs::is_directory(dir, ec))
    raise<FormatError>("{}: not a folder (expected a Hugging Face model folder)", dir.string());
  const ModelConfig cfg = load_model_config(dir);
  models::check_config(cfg, (dir / "config.json").string(), /*from_file=*/true);
  models::FileWeights weights(dir);
  return cfg.arch == Arch::GPT2 ? models::make_gpt2(cfg, weights, ctx, dir)
                                : models::make_llama(cfg, weights, ctx, dir);
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, uint64_t seed, const ExecContext& ctx) {
  require_cpu(ctx);
  models::check_config(config, "Model::random: config", /*from_file=*/false);
  models::RandomWeights weights(seed, disk_dtype_size(config.torch_dtype));
  return config.arch == Arch::GPT2 ? models::make_gpt2(config, weights, ctx, {})
                                   : models::make_llama(config, weights, ctx, {});
}

void Model::set_context(const ExecContext& ctx) {
  require_cpu(ctx);
  ctx_ = ctx;
}

KVCache Model::make_cache(int64_t max_tokens) const {
  if (max_tokens < 0 || max_tokens > config_.max_positions)
    raise<InvalidArgument>("KV cache size {} is outside [1, {}] (the model's max positions; 0 = all)",
                           max_tokens, config_.max_positions);
  const int64_t cap = max_tokens == 0 ? config_.max_positions : max_tokens;
  return KVCache(config_.num_layers, config_.num_kv_heads, config_.head_dim, cap);
}

void Model::forward(std::span<const int32_t> tokens, KVCache& cache, float* logits, bool all_logits) {
  const int64_t n = int64_t(tokens.size());
  if (n == 0) raise<InvalidArgument>("forward: no tokens");
  if (cache.num_layers() != config_.num_layers || cache.num_kv_heads() != config_.num_kv_heads ||
      cache.head_dim() != config_.head_dim || cache.capacity() > config_.max_positions)
    raise<InvalidArgument>(
        "forward: the KV cache (layers {}, kv heads {}, head_dim {}, capacity {}) was not made for this "
        "model "
        "(layers {}, kv heads {}, head_dim {}, max positions {})",
        cache.num_layers(), cache.num_kv_heads(), cache.head_dim(), cache.capacity(), config_.num_layers,
        config_.num_kv_heads, config_.head_dim, config_.max_positions);
  if (n > cache.capacity() - cache.size())
    raise<InvalidArgument>("forward: {} tokens do not fit in the KV cache (holds {} of {} tokens)", n,
                           cache.size(), cache.capacity());
  for (int64_t i = 0; i < n; ++i)
    if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= config_.vocab_size)
      raise<InvalidArgument>("forward: token id {} at index {} is outside the vocabulary [0, {})",
                             tokens[size_t(i)], i, config_.vocab_size);

  const int64_t chunk = models::chunk_rows(config_.max_positions);
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    const bool last_chunk = begin + len == n;
    float* out = nullptr;
    if (logits && all_logits) out = logits + begin * config_.vocab_size;
    if (logits && !all_logits && last_chunk) out = logits;
    forward_chunk(tokens.subspan(size_t(begin), size_t(len)), cache, out, !all_logits);
    cache.advance(len);
  }
}

void Model::register_linear(std::string name, std::unique_ptr<Linear>* op, bool is_lm_head) {
  linears_.push_back(LinearSlot{std::move(name), op, is_lm_head});
}

void Model::register_parameter(const Tensor& t) { parameters_.push_back(t); }

std::vector<LinearSlot> Model::linear_layers() { return linears_; }

WeightBytes Model::weight_breakdown() const {
  WeightBytes b;
  std::vector<const float*> shared;  // F32 Linear weights (a tied lm_head shares the embedding)
  for (const LinearSlot& s : linears_) {
    b.linear += (*s.op)->weight_bytes();
    if (const float* p = linear_f32_weight_data(**s.op)) shared.push_back(p);
  }
  for (const Tensor& t : parameters_)
    if (std::find(shared.begin(), shared.end(), t.data<float>()) == shared.end()) b.other += t.nbytes();
  return b;
}

}  // namespace kq
