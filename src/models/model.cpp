// kq::Model: loading/creation dispatch, backend selection and moving to a
// device, input validation and chunking of forward() / decode_batch(), linear
// slots and weight accounting shared by all architectures.
#include "kq/model.hpp"

#include <algorithm>
#include <atomic>
#include <system_error>
#include <thread>

#include "io/file_kind.hpp"
#include "kernels/cpu/ops_threads.hpp"
#include "kernels/linear.hpp"
#include "kernels/linear_f32.hpp"
#include "kernels/linear_w16.hpp"
#include "kq/error.hpp"
#include "kq/quantize.hpp"
#include "models/backend.hpp"
#include "models/common.hpp"
#include "models/weights.hpp"

namespace kq {

namespace fs = std::filesystem;

namespace {
void check_context(const ExecContext& ctx) {
  if (ctx.device != Device::CPU && ctx.device != Device::CUDA)
    raise<InvalidArgument>("ExecContext::device {} is not a Device (cpu or cuda)", int(ctx.device));
  if (ctx.threads < 0 || ctx.threads > kMaxThreads)
    raise<InvalidArgument>("ExecContext::threads must be in [0, {}] (0 = all cores), got {}", kMaxThreads, ctx.threads);
}

std::unique_ptr<models::Backend> make_backend(const ExecContext& ctx) {
  return ctx.device == Device::CPU ? models::make_cpu_backend(ctx) : models::make_cuda_backend(ctx);
}

// random_quantized's mode: "bf16" / "f32" / "fp32" (unquantized) or a parse_quant_mode name. AWQ
// searches its scales on calibration data; only the CUDA backend draws random AWQ layers without it.
void check_random_mode(const std::string& mode, Device device) {
  if (mode == "bf16" || mode == "f32" || mode == "fp32") return;
  QuantSpec spec;
  try {
    spec = parse_quant_mode(mode, "bf16, f32, fp32 (unquantized)");
  } catch (const InvalidArgument& e) {
    raise<InvalidArgument>("Model::random_quantized: {}", e.what());
  }
  if (spec.awq && device == Device::CPU)
    raise<InvalidArgument>(
        "Model::random_quantized: mode '{}' is AWQ, which needs calibration data (quantize_model with "
        "QuantizeOptions::calibration); a random AWQ model is not available on the CPU",
        mode);
}

// Random weights are F32 [rows, hidden_size] per matrix: each byte size must fit int64, or
// Tensor::empty refuses it with a message naming neither the function nor the config field.
void check_random_shapes(const ModelConfig& c, const char* where) {
  const std::pair<const char*, int64_t> rows[] = {{"vocab_size", c.vocab_size},
                                                  {"intermediate_size", c.intermediate_size},
                                                  {"max_positions", c.max_positions},
                                                  {"num_heads x head_dim", c.num_heads * c.head_dim}};
  for (const auto& [key, n] : rows) {
    int64_t bytes = 0;
    if (__builtin_mul_overflow(n, c.hidden_size, &bytes) || __builtin_mul_overflow(bytes, int64_t(4), &bytes))
      raise<InvalidArgument>("{}: config: {} {} x hidden_size {} F32 weights ({} bytes each) overflow int64", where,
                             key, n, c.hidden_size, 4);
  }
}

bool is_16bit(DType t) { return t == DType::BF16 || t == DType::F16; }

/// A heap copy of `t` (F32) in `dtype` (BF16 or F16): exact for values that came from that dtype.
Tensor to_16bit(const Tensor& t, DType dtype) {
  Tensor out = Tensor::empty(dtype, t.shape());
  convert_from_f32(dtype, t.data<float>(), out.raw_mut(), size_t(t.numel()));
  return out;
}

/// Where the weights of a dense (F32 or 16-bit) Linear start, else nullptr.
const void* dense_weight_data(const Linear& op) {
  if (const float* w = linear_f32_weight_data(op)) return w;
  if (const Tensor* w = linear_w16_weight(op)) return w->raw();
  return nullptr;
}

size_t disk_dtype_size(const std::string& torch_dtype) {
  if (torch_dtype == "bfloat16" || torch_dtype == "float16" || torch_dtype == "bf16" || torch_dtype == "fp16")
    return 2;
  return 4;
}
}  // namespace

// A call from another thread while the mark is held throws instead of sharing the scratch buffers (forward) or
// changing what a running forward reads; a nested call on the same thread passes (it holds the mark already).
Model::InUse::InUse(Model& model, const char* what) : owner_(model.running_) {
  const std::thread::id self = std::this_thread::get_id();
  std::thread::id expected{};
  if (owner_.compare_exchange_strong(expected, self)) {
    held_ = true;
  } else if (expected != self) {
    raise<InvalidArgument>(
        "{} called while another call on the same Model runs (a Model is not thread-safe; use one Model per thread)",
        what);
  }
}

Model::InUse::~InUse() {
  if (held_) owner_.store(std::thread::id{});
}

Model::Model(ModelConfig config, ExecContext ctx, fs::path source_dir, LinearTransform transform)
    : config_(std::move(config)),
      ctx_(ctx),
      source_dir_(std::move(source_dir)),
      transform_(std::move(transform)),
      backend_(make_backend(ctx_)) {}

Model::~Model() = default;

std::unique_ptr<Model> Model::load(const fs::path& dir, const ExecContext& ctx) { return load(dir, ctx, {}); }

std::unique_ptr<Model> Model::load(const fs::path& dir, const ExecContext& ctx, const LinearTransform& transform) {
  return load(dir, ctx, transform, /*tables_in_disk_dtype=*/false);
}

std::unique_ptr<Model> Model::load(const fs::path& dir, const ExecContext& ctx, const LinearTransform& transform,
                                   bool tables_in_disk_dtype) {
  check_context(ctx);
  const cpu::OmpThreadsScope threads(resolve_threads(ctx.threads));  // converting weights, `transform`
  std::error_code ec;
  if (dir.empty()) raise<InvalidArgument>("the model folder path is empty");
  // Not found, or a symbolic link loop / dangling link (said so: "not found" misled).
  if (!fs::exists(dir, ec))
    raise<FormatError>("{}: model folder {}", dir.string(), io::why_not_regular_file(dir).value_or("not found"));
  if (!fs::is_directory(dir, ec))
    raise<FormatError>("{}: not a folder (expected a Hugging Face model folder)", dir.string());
  const ModelConfig cfg = load_model_config(dir);
  models::check_config(cfg, (dir / "config.json").string(), /*from_file=*/true);
  models::FileWeights weights(dir);
  weights.check_config_sizes(cfg);  // before anything is allocated per layer or by size
  // A quantized folder's unquantized parts end up in their BF16/F16 disk dtype (hold_unquantized_in_disk_dtype
  // below). On the CPU, with no transform (which gets FP32 ops, as documented), they are read in it from the
  // start: the tables, an unquantized lm_head and kept layers, never an FP32 copy. CUDA: converted after the build.
  const bool quantized_held = weights.quantized() && !transform && ctx.device == Device::CPU;
  const bool held = (tables_in_disk_dtype || quantized_held) && ctx.device == Device::CPU;
  weights.set_hold_in_disk_dtype(held);
  weights.set_hold_linears_in_disk_dtype(quantized_held);
  // source_dir() is absolute: save_quantized_model reads the folder again later, after any chdir of the caller's.
  fs::path source = fs::weakly_canonical(dir, ec);
  if (ec) source = fs::absolute(dir, ec).lexically_normal();
  auto m = cfg.arch == Arch::GPT2 ? models::make_gpt2(cfg, weights, ctx, source, transform)
                                  : models::make_llama(cfg, weights, ctx, source, transform);
  m->transform_ = {};  // built: its captures need not outlive the call
  weights.check_quantized_modules_read(cfg);  // a kq folder lists only linear layers the model has
  if (weights.quantized()) {
    m->hold_unquantized_in_disk_dtype();  // before the upload (read so already on the CPU without a transform)
  } else if (held && std::all_of(m->linears_.begin(), m->linears_.end(), [](const LinearSlot& s) {
               return linear_f32_weight_data(**s.op) != nullptr || (s.is_lm_head && linear_w16_weight(**s.op));
             })) {
    m->hold_unquantized_in_f32();  // nothing quantized or held in 16 bits: as load(dir, ctx, transform) holds them
  }
  m->upload_parameters();
  m->unused_source_tensors_ = weights.unused_tensors();  // (not saved by save_quantized_model)
  weights.warn_unused_tensors(cfg);  // e.g. layers beyond num_hidden_layers: a warning, not an error
  return m;
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, uint64_t seed, const ExecContext& ctx) {
  return random(config, seed, ctx, {});
}

std::unique_ptr<Model> Model::random(const ModelConfig& config, uint64_t seed, const ExecContext& ctx,
                                     const LinearTransform& transform) {
  check_context(ctx);
  const cpu::OmpThreadsScope threads(resolve_threads(ctx.threads));  // `transform`
  models::check_config(config, "Model::random: config", /*from_file=*/false);
  check_random_shapes(config, "Model::random");
  models::RandomWeights weights(seed, disk_dtype_size(config.torch_dtype));
  auto m = config.arch == Arch::GPT2 ? models::make_gpt2(config, weights, ctx, {}, transform)
                                     : models::make_llama(config, weights, ctx, {}, transform);
  m->transform_ = {};  // built: its captures need not outlive the call
  m->upload_parameters();
  return m;
}

std::unique_ptr<Model> Model::random_quantized(const ModelConfig& config, uint64_t seed, const ExecContext& ctx,
                                               const std::string& mode, bool quantize_lm_head) {
  check_context(ctx);
  const cpu::OmpThreadsScope threads(resolve_threads(ctx.threads));  // quantizing each random layer
  models::check_config(config, "Model::random_quantized: config", /*from_file=*/false);
  check_random_shapes(config, "Model::random_quantized");
  check_random_mode(mode, ctx.device);
  models::RandomWeights weights(seed, disk_dtype_size(config.torch_dtype));
  weights.set_linear_mode(mode, quantize_lm_head);
  auto m = config.arch == Arch::GPT2 ? models::make_gpt2(config, weights, ctx, {}, {})
                                     : models::make_llama(config, weights, ctx, {}, {});
  m->upload_parameters();
  return m;
}

void Model::set_context(const ExecContext& ctx) {
  const InUse in_use(*this, "Model::set_context");
  check_context(ctx);
  if (ctx.device != ctx_.device)
    raise<Unsupported>("set_context cannot move the model from '{}' to '{}'; use Model::to_device",
                       device_name(ctx_.device), device_name(ctx.device));
  backend_->set_context(ctx);
  ctx_ = ctx;
}

void Model::to_device(const ExecContext& ctx) {
  const InUse in_use(*this, "Model::to_device");
  check_context(ctx);
  check_linear_layers("to_device");
  const cpu::OmpThreadsScope threads(resolve_threads(ctx.threads));
  if (ctx_.device != Device::CPU && ctx.device == Device::CPU)
    raise<Unsupported>("moving a model from '{}' back to the CPU is not supported; load it again on the CPU",
                       device_name(ctx_.device));
  // Same device: only layers swapped in since (still CPU ops) are converted.
  std::unique_ptr<models::Backend> fresh = ctx.device == ctx_.device ? nullptr : make_backend(ctx);
  models::Backend& be = fresh ? *fresh : *backend_;
  // Convert everything first, so a failure leaves the model as it was.
  std::vector<std::unique_ptr<Linear>> converted;
  converted.reserve(linears_.size());
  for (const LinearSlot& s : linears_) converted.push_back(be.convert(s.name, **s.op));
  if (fresh)
    for (ParamEntry& e : parameters_) {
      // Shared only while the tied slot still holds a linear over the table (not one swapped in since).
      const int64_t i = e.tied_linear.empty() ? -1 : linear_index(e.tied_linear);
      const bool tied = i >= 0 && converted[size_t(i)] && e.param->host.defined() &&
                        dense_weight_data(**linears_[size_t(i)].op) == e.param->host.raw();
      upload_parameter(*fresh, e, tied ? converted[size_t(i)].get() : nullptr);
    }
  for (size_t i = 0; i < linears_.size(); ++i)
    if (converted[i]) *linears_[i].op = std::move(converted[i]);
  if (fresh) backend_ = std::move(fresh);
  backend_->set_context(ctx);
  ctx_ = ctx;
  fuse_linears();
}

void Model::fuse_linears() {
  for (const auto& group : fusions_) backend_->fuse(group);
}

void Model::set_cuda_graphs(bool enabled) {
  const InUse in_use(*this, "Model::set_cuda_graphs");
  backend_->set_graphs(enabled);
}

int64_t Model::cuda_graph_replays() const { return backend_->graph_replays(); }

double Model::cuda_graph_gpu_ms() const { return backend_->graph_gpu_ms(); }

std::unique_ptr<Linear> Model::make_linear(const std::string& name, std::unique_ptr<Linear> op) {
  // LinearSlot::disk_dtype, from the op as read: a 16-bit op's dtype, an FP32 op's recorded disk dtype, or for
  // one over a registered table (a tied lm_head) the table's.
  DType disk = linear_f32_disk_dtype(*op);
  if (const Tensor* w16 = linear_w16_weight(*op)) disk = w16->dtype();
  if (const float* w = linear_f32_weight_data(*op))
    for (const ParamEntry& e : parameters_)
      if (e.param->host.raw() == w) disk = e.param->disk_dtype;
  built_disk_dtypes_.emplace_back(name, disk);
  if (transform_) {
    const int64_t out = op->out_features(), in = op->in_features();
    op = transform_(name, std::move(op));
    if (!op) raise<InvalidArgument>("the linear transform returned no op for '{}'", name);
    // The model's buffers are sized for the layer's shape: another one would read or write past them.
    if (op->out_features() != out || op->in_features() != in)
      raise<InvalidArgument>(
          "the linear transform returned an op of {} out x {} in features for '{}', which has {} x {}; a "
          "replacement must keep the layer's shape",
          op->out_features(), op->in_features(), name, out, in);
  }
  // A linear over a registered table's values (a tied lm_head, unless the transform replaced it): a device
  // backend may then hold one copy of both (upload_parameter).
  if (const void* w = dense_weight_data(*op))
    for (ParamEntry& e : parameters_)
      if (e.kind == models::ParamKind::Table && e.param->host.raw() == w) e.tied_linear = name;
  if (auto converted = backend_->convert(name, *op)) op = std::move(converted);
  return op;
}

void Model::upload_parameter(models::Backend& be, ParamEntry& e, const Linear* tied) {
  if (tied && e.kind == models::ParamKind::Table && be.share_table(*e.param, *tied)) return;
  be.upload(*e.param, e.kind);
}

int64_t Model::linear_index(const std::string& name) const {
  for (size_t i = 0; i < linears_.size(); ++i)
    if (linears_[i].name == name) return int64_t(i);
  return -1;
}

void Model::upload_parameters() {
  // At construction: a tied slot's op is the one make_linear converted over the table.
  for (ParamEntry& e : parameters_) {
    const int64_t i = e.tied_linear.empty() ? -1 : linear_index(e.tied_linear);
    upload_parameter(*backend_, e, i < 0 ? nullptr : linears_[size_t(i)].op->get());
  }
  fuse_linears();
}

KVCache Model::make_cache(int64_t max_tokens) const {
  if (max_tokens < 0 || max_tokens > config_.max_positions)
    raise<InvalidArgument>("KV cache size {} is outside [1, {}] (the model's max positions; 0 = all)",
                           max_tokens, config_.max_positions);
  const int64_t cap = max_tokens == 0 ? config_.max_positions : max_tokens;
  const Device dev = backend_->device();
  if (dev == Device::CPU) return KVCache(config_.num_layers, config_.num_kv_heads, config_.head_dim, cap);
  const size_t bytes = size_t(2 * config_.num_layers * config_.num_kv_heads * cap * config_.head_dim) * 2;
  return KVCache(config_.num_layers, config_.num_kv_heads, config_.head_dim, cap, dev,
                 backend_->alloc_cache(bytes));
}

void Model::reserve_cache(KVCache& cache, int64_t capacity) const {
  check_cache(cache, "reserve_cache");
  if (capacity <= cache.capacity()) return;
  if (capacity > config_.max_positions)
    raise<InvalidArgument>("reserve_cache: capacity {} exceeds the model's max positions {}", capacity,
                           config_.max_positions);
  if (cache.device() == Device::CPU) {
    cache.reserve(capacity);
    return;
  }
  // Device keys and values: 2 · layers · kv heads blocks of capacity · head_dim BF16 values, one after another
  // (KVCache's layout), of which each block's first size() rows are held.
  KVCache grown = make_cache(capacity);
  const size_t row_bytes = size_t(config_.head_dim) * sizeof(uint16_t);
  if (cache.size() > 0)
    backend_->copy_cache(grown.device_keys(0), size_t(capacity) * row_bytes, cache.device_keys(0),
                         size_t(cache.capacity()) * row_bytes, size_t(cache.size()) * row_bytes,
                         size_t(2 * config_.num_layers * config_.num_kv_heads));
  grown.advance(cache.size());
  cache = std::move(grown);
}

void Model::check_cache(const KVCache& cache, const char* where) const {
  if (cache.num_layers() == 0)  // KVCache() or moved-from: no sizes, no memory
    raise<InvalidArgument>("{}: the KV cache is empty (default-constructed or moved-from: no layers, capacity 0); "
                           "make one with this model's make_cache()",
                           where);
  if (cache.num_layers() != config_.num_layers || cache.num_kv_heads() != config_.num_kv_heads ||
      cache.head_dim() != config_.head_dim)
    raise<InvalidArgument>(
        "{}: the KV cache (layers {}, kv heads {}, head_dim {}) was not made for this model (layers {}, kv heads {}, "
        "head_dim {}); make one with its make_cache()",
        where, cache.num_layers(), cache.num_kv_heads(), cache.head_dim(), config_.num_layers, config_.num_kv_heads,
        config_.head_dim);
  if (cache.capacity() > config_.max_positions)  // KVCache::reserve knows no model
    raise<InvalidArgument>(
        "{}: the KV cache's capacity of {} positions exceeds the model's max_positions {} (grown with "
        "KVCache::reserve, which does not check it, or made by a model with a longer context); make one with this "
        "model's make_cache() and grow it with reserve_cache()",
        where, cache.capacity(), config_.max_positions);
  if (cache.device() != backend_->device())
    raise<InvalidArgument>("{}: the KV cache lives on '{}' but the model runs on '{}' (make_cache() again)",
                           where, device_name(cache.device()), device_name(backend_->device()));
}

// A LinearSlot can be given an op of another shape after the load; the step's buffers are sized for the
// layer's, so the op would read or write past them (a 4x-vocabulary lm_head: past the caller's logits). Integer
// compares only, once per call: every layer, before anything is computed.
void Model::check_linear_layers(const char* where) const {
  for (size_t i = 0; i < linears_.size(); ++i) {
    const LinearSlot& s = linears_[i];
    const Linear* op = s.op->get();
    const LinearShape want = linear_shapes_[i];
    if (!op) raise<InvalidArgument>("{}: layer '{}' holds no op (a null Linear was put into its LinearSlot)", where,
                                    s.name);
    if (op->out_features() == want.out && op->in_features() == want.in) continue;
    raise<InvalidArgument>(
        "{}: layer '{}' holds an op of {} out x {} in features, but the model maps {} {} to {} {}; a replacement "
        "put into a LinearSlot must keep the layer's shape",
        where, s.name, op->out_features(), op->in_features(), want.in,
        s.is_lm_head ? "hidden features" : "input features", want.out, s.is_lm_head ? "logits" : "output features");
  }
}

void Model::run_step(std::span<const int32_t> tokens, std::span<const int32_t> row_seq,
                     std::span<const int32_t> row_pos, std::span<KVCache* const> caches, float* logits,
                     bool last_only, bool graphable) {
  models::StepRows rows;
  rows.tokens = tokens;
  rows.row_seq = row_seq;
  rows.row_pos = row_pos;
  rows.caches = caches;
  rows.logits = logits;
  rows.last_only = last_only;
  rows.graphable = graphable;
  const int64_t n = int64_t(tokens.size());
  const bool want_logits = logits != nullptr;
  backend_->run(rows, [this, n, want_logits, last_only](models::Backend& be) {
    forward_step(be, n, want_logits, last_only);
  });
  // Gemma 2's final_logit_softcapping, on the host logits the step delivered (every caller of forward() and
  // decode_batch() sees the capped values, as transformers' Gemma2ForCausalLM returns them).
  if (logits && config_.final_logit_softcapping > 0)
    models::softcap_inplace(logits, (last_only ? 1 : n) * config_.vocab_size, float(config_.final_logit_softcapping),
                            resolve_threads(ctx_.threads));
}

void Model::forward(std::span<const int32_t> tokens, KVCache& cache, float* logits, bool all_logits,
                    int64_t pass_end) {
  const InUse in_use(*this, "Model::forward");
  const int64_t n = int64_t(tokens.size());
  if (n == 0) raise<InvalidArgument>("forward: no tokens");
  check_cache(cache, "forward");
  if (n > cache.capacity() - cache.size())
    raise<InvalidArgument>("forward: {} tokens do not fit in the KV cache (holds {} of {} tokens)", n,
                           cache.size(), cache.capacity());
  const int64_t end = cache.size() + n;
  if (pass_end != 0 && (pass_end < end || pass_end > config_.max_positions))
    raise<InvalidArgument>("forward: pass_end {} is outside [{}, {}] (the sequence length after these {} tokens, "
                           "the model's max positions)",
                           pass_end, end, config_.max_positions, n);
  for (int64_t i = 0; i < n; ++i)
    if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= config_.vocab_size)
      raise<InvalidArgument>("forward: token id {} at index {} is outside the vocabulary [0, {})",
                             tokens[size_t(i)], i, config_.vocab_size);
  check_linear_layers("forward");
  // transformers' longrope_frequency_update: the pass's length max(position_ids) + 1 picks the factors of all
  // its positions. Passes that start at or past original_max_positions need nothing special (the tables already
  // hold the long factors there; see LlamaModel's rope_).
  const RopeScaling& rs = config_.rope_scaling;
  const bool long_pass = rs.type == RopeScaling::Type::LongRope && cache.size() < rs.original_max_positions &&
                         std::max(pass_end, end) > rs.original_max_positions;
  struct PassMark {  // long_rope_pass() for this call's steps only, also when one throws
    bool& flag;
    ~PassMark() { flag = false; }
  } mark{long_rope_pass_};
  long_rope_pass_ = long_pass;

  reserve_positions(cache.capacity());
  const int64_t chunk = std::min(config_.max_positions, backend_->max_rows());
  KVCache* const caches[1] = {&cache};
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    const bool last_chunk = begin + len == n;
    float* out = nullptr;
    if (logits && all_logits) out = logits + begin * config_.vocab_size;
    if (logits && !all_logits && last_chunk) out = logits;
    meta_.assign(size_t(2 * len), 0);  // row_seq = 0, row_pos = consecutive positions
    for (int64_t i = 0; i < len; ++i) meta_[size_t(len + i)] = int32_t(cache.size() + i);
    const std::span<const int32_t> meta(meta_);
    run_step(tokens.subspan(size_t(begin), size_t(len)), meta.first(size_t(len)), meta.last(size_t(len)),
             caches, out, /*last_only=*/!all_logits && len > 1, /*graphable=*/len == 1 && !long_pass);
    cache.advance(len);
  }
}

void Model::decode_batch(std::span<const int32_t> tokens, std::span<KVCache* const> caches, float* logits) {
  const InUse in_use(*this, "Model::decode_batch");
  const int64_t n = int64_t(tokens.size());
  if (n == 0) raise<InvalidArgument>("decode_batch: no tokens");
  if (caches.size() != tokens.size())
    raise<InvalidArgument>("decode_batch: {} tokens but {} KV caches (one token per sequence)", n,
                           caches.size());
  for (int64_t i = 0; i < n; ++i) {
    const KVCache* c = caches[size_t(i)];
    if (!c) raise<InvalidArgument>("decode_batch: KV cache {} is null", i);
    for (int64_t j = 0; j < i; ++j)
      if (caches[size_t(j)] == c) raise<InvalidArgument>("decode_batch: sequences {} and {} share a KV cache", j, i);
    check_cache(*c, "decode_batch");
    if (c->size() >= c->capacity())
      raise<InvalidArgument>("decode_batch: the KV cache of sequence {} is full ({} tokens)", i, c->capacity());
    if (tokens[size_t(i)] < 0 || tokens[size_t(i)] >= config_.vocab_size)
      raise<InvalidArgument>("decode_batch: token id {} of sequence {} is outside the vocabulary [0, {})",
                             tokens[size_t(i)], i, config_.vocab_size);
  }
  check_linear_layers("decode_batch");
  int64_t capacity = 0;
  for (const KVCache* c : caches) capacity = std::max(capacity, c->capacity());
  reserve_positions(capacity);
  const int64_t chunk = backend_->max_rows();
  for (int64_t begin = 0; begin < n; begin += chunk) {
    const int64_t len = std::min(chunk, n - begin);
    meta_.resize(size_t(2 * len));
    for (int64_t i = 0; i < len; ++i) {
      meta_[size_t(i)] = int32_t(i);
      meta_[size_t(len + i)] = int32_t(caches[size_t(begin + i)]->size());
    }
    const std::span<const int32_t> meta(meta_);
    run_step(tokens.subspan(size_t(begin), size_t(len)), meta.first(size_t(len)), meta.last(size_t(len)),
             caches.subspan(size_t(begin), size_t(len)), logits ? logits + begin * config_.vocab_size : nullptr,
             /*last_only=*/false, /*graphable=*/true);
  }
  for (KVCache* c : caches) c->advance(1);
}

void Model::register_linear(std::string name, std::unique_ptr<Linear>* op, bool is_lm_head) {
  DType disk = DType::F32;
  const auto built = std::find_if(built_disk_dtypes_.begin(), built_disk_dtypes_.end(),
                                  [&](const auto& b) { return b.first == name; });
  if (built != built_disk_dtypes_.end()) {
    disk = built->second;
    built_disk_dtypes_.erase(built);
  }
  linears_.push_back(LinearSlot{std::move(name), op, is_lm_head, disk});
  linear_shapes_.push_back(LinearShape{(*op)->out_features(), (*op)->in_features()});
}

void Model::register_parameter(models::Param& p, models::ParamKind kind) {
  parameters_.push_back(ParamEntry{&p, kind, true});
}

void Model::register_fusion(std::vector<std::unique_ptr<Linear>*> slots) { fusions_.push_back(std::move(slots)); }

void Model::register_buffer(models::Param& p) {
  parameters_.push_back(ParamEntry{&p, models::ParamKind::Vector, false});
}

std::vector<LinearSlot> Model::linear_layers() { return linears_; }

std::vector<std::vector<std::string>> Model::fusion_groups() const {
  std::vector<std::vector<std::string>> groups;
  for (const auto& group : fusions_) {
    std::vector<std::string> names;
    for (const std::unique_ptr<Linear>* slot : group)
      for (const LinearSlot& s : linears_)
        if (s.op == slot) names.push_back(s.name);
    groups.push_back(std::move(names));
  }
  return groups;
}

size_t Model::buffer_bytes() const {
  size_t bytes = 0;
  for (const ParamEntry& e : parameters_)
    if (!e.counted) bytes += e.param->host.nbytes();
  return bytes;
}

void Model::hold_unquantized_in_disk_dtype() {
  const InUse in_use(*this, "Model::hold_unquantized_in_disk_dtype");
  check_linear_layers("hold_unquantized_in_disk_dtype");  // before anything changes
  // Tables first. The F32 tensors they replace are kept until the end, so that
  // a tied lm_head still pointing at one is recognised by its address.
  std::vector<std::pair<Tensor, const Tensor*>> replaced;  // (old F32 table, its 16-bit successor)
  for (ParamEntry& e : parameters_) {
    models::Param& p = *e.param;
    if (e.kind != models::ParamKind::Table || p.host.dtype() != DType::F32 || !is_16bit(p.disk_dtype)) continue;
    Tensor old = p.host;
    p.host = to_16bit(old, p.disk_dtype);
    replaced.emplace_back(std::move(old), &p.host);
  }
  for (const LinearSlot& s : linears_) {
    const Linear& op = **s.op;
    const float* w = linear_f32_weight_data(op);
    if (!w) continue;  // quantized, already 16-bit, or a device op
    const auto table = std::find_if(replaced.begin(), replaced.end(),
                                     [&](const auto& r) { return r.first.template data<float>() == w; });
    if (table != replaced.end()) {
      *s.op = make_linear_w16(*table->second, op.bias());  // shares the 16-bit table
    } else if (auto held = linear_in_disk_dtype(op)) {
      *s.op = std::move(held);
    }
  }
}

void Model::hold_unquantized_in_f32() {
  const InUse in_use(*this, "Model::hold_unquantized_in_f32");
  check_linear_layers("hold_unquantized_in_f32");  // before anything changes
  std::vector<std::pair<Tensor, const Tensor*>> replaced;  // (old 16-bit table, its F32 successor)
  for (ParamEntry& e : parameters_) {
    models::Param& p = *e.param;
    if (e.kind != models::ParamKind::Table || !is_16bit(p.host.dtype())) continue;
    Tensor old = p.host;
    p.host = old.to_f32();
    replaced.emplace_back(std::move(old), &p.host);
  }
  for (const LinearSlot& s : linears_) {
    const Tensor* w = linear_w16_weight(**s.op);
    if (!w) continue;
    const auto table = std::find_if(replaced.begin(), replaced.end(),
                                     [&](const auto& r) { return r.first.raw() == w->raw(); });
    if (table != replaced.end())
      *s.op = make_linear_f32(*table->second, (*s.op)->bias());
    else
      *s.op = make_linear_f32(w->to_f32(), (*s.op)->bias(), w->dtype());
  }
}

WeightBytes Model::weight_breakdown() const {
  check_linear_layers("weight_breakdown");
  WeightBytes b;
  std::vector<const void*> shared;  // dense Linear weights (a tied lm_head shares the embedding)
  for (const LinearSlot& s : linears_) {
    b.linear += (*s.op)->weight_bytes();
    if (const void* p = dense_weight_data(**s.op)) shared.push_back(p);
  }
  const bool on_host = backend_->device() == Device::CPU;
  for (const ParamEntry& e : parameters_) {
    if (!e.counted) continue;
    if (!on_host) {
      b.other += e.param->device_bytes;
    } else {
      const Tensor& t = e.param->host;
      if (std::find(shared.begin(), shared.end(), t.raw()) == shared.end()) b.other += t.nbytes();
    }
  }
  return b;
}

}  // namespace kq
