#pragma once
// Where a model's parameters come from: a safetensors folder or a seeded
// random generator. Architectures ask for tensors by Hugging Face name and
// expected shape and get F32 [rows, cols] tensors back (the embedding tables
// and an unquantized lm_head in their BF16/F16 disk dtype when the load asks
// for it: WeightSource::held; the unquantized linear layers of a quantized
// folder likewise: WeightSource::dense_linear).
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "io/safetensors.hpp"
#include "io/tensor_checksums.hpp"
#include "kernels/linear.hpp"
#include "kq/config.hpp"
#include "kq/error.hpp"
#include "kq/tensor.hpp"
#include "quant/bnb8.hpp"
#include "quant/hub_int4.hpp"

namespace kq::models {

class Backend;

/// How random() initializes a parameter (ignored when loading from files).
enum class Init {
  Weight,  ///< linear weights and embeddings: uniform, standard deviation 0.02
  Ones,    ///< norm gains
  Zeros,   ///< biases
};

/// One part of a weight a checkpoint stores fused: rows [row0, row0 + rows) of
/// the fused [total, in] tensor are the weight `name` of a linear layer kq
/// builds (e.g. "model.layers.0.self_attn.k_proj.weight").
struct FusedPart {
  std::string name;
  int64_t row0 = 0, rows = 0;
};

/// The parts, in row order, of the tensor `name` when config `c` stores it fused: Phi3's
/// "model.layers.N.self_attn.qkv_proj.weight" [(heads + 2·kv_heads)·head_dim, hidden] (q_proj's rows, then
/// k_proj's, then v_proj's) and "model.layers.N.mlp.gate_up_proj.weight" [2·intermediate_size, hidden] (gate_proj's
/// rows, then up_proj's). Empty for any other tensor or architecture. The loader splits them into the linear
/// layers (Llama's), and a quantized folder is saved with the split names.
std::vector<FusedPart> fused_parts(const ModelConfig& c, const std::string& name);

/// Diagnostics for tests of what a load converts: the bytes of the F32 heap
/// copies every FileWeights has made so far (BF16/F16 tensors converted, F32
/// ones copied for alignment or a transpose; 4 bytes per element), summed over
/// the process. Thread-safe; never reset (tests compare differences).
size_t file_weights_f32_copy_bytes();

/// A source of F32 parameters.
class WeightSource {
 public:
  virtual ~WeightSource() = default;
  /// Whether a tensor `name` exists (always true for random weights).
  virtual bool contains(const std::string& name) const = 0;
  /// Tensor `name` as F32 with exactly `shape`. Throws FormatError naming the
  /// tensor and the folder when it is missing, has another shape or a non-float dtype.
  virtual Tensor get(const std::string& name, const Shape& shape, Init init) = 0;
  /// A GPT-2 Conv1D weight stored [in, out] returned as F32 [out, in] = `shape`.
  virtual Tensor get_transposed(const std::string& name, const Shape& shape, Init init) = 0;
  /// The linear layer `module` (canonical slot name, e.g. "transformer.h.0.attn.c_attn")
  /// when the source stores it quantized (a KernelQuant quantized folder), with
  /// its tensors under `file_prefix` ("h.0.attn.c_attn" in a hub-style GPT-2
  /// folder); nullptr when it is stored as a plain weight. `out`, `in`: the
  /// expected [N, K]; `bias`: whether the architecture gives this layer a
  /// bias (as for the FP32 path), so that a missing "<file_prefix>.bias" is
  /// the same "missing tensor" FormatError. Throws FormatError naming the
  /// tensor on a mismatch.
  virtual std::unique_ptr<Linear> quantized_linear(const std::string& module, const std::string& file_prefix,
                                                   int64_t out, int64_t in, bool bias) {
    (void)module, (void)file_prefix, (void)out, (void)in, (void)bias;
    return nullptr;
  }
  /// The linear layers of `parts` (fused_parts of "<fused_prefix>.weight", in their row order; `in`: K) when the
  /// source stores the fused layer `fused_prefix` quantized as one (an AutoAWQ / AutoGPTQ checkpoint of Phi-3:
  /// "<fused_prefix>.qweight", ...), split by output rows losslessly (load_hub_int4_fused_linears); empty when it
  /// does not. Throws FormatError naming the tensor on a mismatch.
  virtual std::vector<std::unique_ptr<Linear>> quantized_fused_linears(const std::string& fused_prefix,
                                                                       const std::vector<FusedPart>& parts,
                                                                       int64_t in) {
    (void)fused_prefix, (void)parts, (void)in;
    return {};
  }
  /// A linear layer the source generates itself in its final form (random
  /// quantized weights for benchmarks, see RandomWeights::set_linear_mode),
  /// on `be`'s device; nullptr for a plain weight (read with get()).
  virtual std::unique_ptr<Linear> generated_linear(const std::string& module, int64_t out, int64_t in,
                                                   Backend& be) {
    (void)module, (void)out, (void)in, (void)be;
    return nullptr;
  }
  /// The dtype tensor `name` is stored in (F32, BF16 or F16), for
  /// Param::disk_dtype and make_linear_f32's disk_dtype. Default (random
  /// weights, whose values are F32 whatever config.torch_dtype says): F32.
  virtual DType disk_dtype(const std::string& name) const {
    (void)name;
    return DType::F32;
  }
  /// Whether the source is a KernelQuant quantized folder (its unquantized
  /// parts are then held in their disk dtype, see Model::load).
  virtual bool quantized() const { return false; }
  /// Tensor `name` with exactly `shape` in its on-disk dtype when that is BF16
  /// or F16 (a heap copy of the file's values, never converted to F32), else
  /// as get(name, shape, init). Same errors as get() (NaN or Inf values too).
  /// Default (random weights): get().
  virtual Tensor get_in_disk_dtype(const std::string& name, const Shape& shape, Init init) {
    return get(name, shape, init);
  }
  /// As get_in_disk_dtype for a GPT-2 Conv1D weight stored [in, out]: returned [out, in] = `shape` (a BF16/F16
  /// one transposed in that dtype, an F32 one as get_transposed). Default (random weights): get_transposed().
  virtual Tensor get_transposed_in_disk_dtype(const std::string& name, const Shape& shape, Init init) {
    return get_transposed(name, shape, init);
  }
  /// Whether the architectures read the embedding tables and an unquantized
  /// lm_head with held() (Model::load's tables_in_disk_dtype); default false.
  void set_hold_in_disk_dtype(bool hold) { hold_in_disk_dtype_ = hold; }
  /// What an architecture reads an embedding table or an unquantized lm_head
  /// weight with: get_in_disk_dtype() after set_hold_in_disk_dtype(true),
  /// else get() (F32). Same errors as those.
  Tensor held(const std::string& name, const Shape& shape, Init init) {
    return hold_in_disk_dtype_ ? get_in_disk_dtype(name, shape, init) : get(name, shape, init);
  }
  /// Whether the architectures' unquantized linear layers (dense_linear) keep a BF16/F16 weight in that dtype
  /// (Model::load of a quantized folder on the CPU, whose unquantized layers end up so anyway:
  /// Model::hold_unquantized_in_disk_dtype); default false (FP32 ops).
  void set_hold_linears_in_disk_dtype(bool hold) { hold_linears_in_disk_dtype_ = hold; }
  /// The op of an unquantized linear layer: weight `weight` with `shape` = [out, in] (`transposed`: stored
  /// [in, out], a GPT-2 Conv1D weight) and, unless `bias` is empty, the F32 bias `bias` [out]. An FP32 op
  /// (make_linear_f32, recording the weight's disk dtype); after set_hold_linears_in_disk_dtype(true), a weight
  /// that is BF16/F16 on disk becomes a 16-bit op over a copy in that dtype (make_linear_w16: the op that
  /// hold_unquantized_in_disk_dtype makes of the FP32 one, with the same bytes), never converted to F32.
  /// Same errors as get(), get_transposed() and get_in_disk_dtype().
  std::unique_ptr<Linear> dense_linear(const std::string& weight, const Shape& shape, bool transposed,
                                       const std::string& bias);
  /// Bytes of the tensors handed out so far, in their on-disk dtype.
  size_t disk_bytes() const { return disk_bytes_; }

 protected:
  size_t disk_bytes_ = 0;

 private:
  bool hold_in_disk_dtype_ = false;
  bool hold_linears_in_disk_dtype_ = false;
};

/// Parameters from a model folder's safetensors (TensorStore::open_dir).
/// F32 tensors that need no transpose are returned as zero-copy views of the
/// mapping; BF16/F16 are converted to F32 on the heap (and GPT-2 Conv1D weights
/// transposed there), after which the mapping's pages they were read from are
/// dropped from the resident memory (core::release_mapped_pages: a load holds
/// each such weight once, not also the file's copy); such a copy that cannot be
/// allocated is an OutOfMemory naming the folder, the tensor, its shape, dtype
/// and file, and the bytes asked. A KernelQuant quantized
/// folder (config.json "quantization_config": {"quant_method": "kq", "modules":
/// {module: mode}}, written by save_quantized_model) also yields its quantized
/// linear layers (a mode that parse_quant_mode does not know is a FormatError
/// naming config.json, the module and the mode, listing the valid modes);
/// a module no tensor of the folder belongs to is a FormatError naming
/// config.json and the module ("the model has no such layer").
/// An AutoAWQ or AutoGPTQ 4-bit checkpoint (quant_method "awq" / "gptq",
/// models/hub_checkpoint.hpp) yields each layer that has "<prefix>.qweight"
/// converted losslessly into kq's INT4 format (quant/hub_int4.hpp), a fused
/// one (Phi3's qkv_proj, gate_up_proj) split into its parts after the
/// conversion (quantized_fused_linears); its other layers are plain weights. A bitsandbytes 4-bit checkpoint
/// (quant_method "bitsandbytes", load_in_4bit, NF4 or FP4) likewise yields each layer
/// with "<prefix>.weight.quant_state.bitsandbytes__nf4" as a kq NF4 op, or with
/// "...__fp4" as a kq FP4_BNB op (quant/bnb4.hpp; the config's bnb_4bit_quant_type decides),
/// an 8-bit one (load_in_8bit, LLM.int8()) each layer with "<prefix>.SCB" as a
/// kq INT8 op (quant/bnb8.hpp: int8-wo, or int8 with llm_int8_threshold 0).
/// Any other quant_method is a FormatError, and so is a folder
/// whose weights are kq-quantized ('kq_quantization' metadata or "*.qweight"
/// tensors) while its config.json has no quantization_config (named).
/// A kq folder whose quantization_config has "checksums" (written by kq
/// quantize since they were added; io/tensor_checksums.hpp) has the record
/// checked against the files' tensors here (FormatError naming the key), and
/// each tensor verified the first time its bytes are read (get(),
/// get_transposed(), the 16-bit reads, a quantized layer's tensors; the
/// embedding and layer-0 projections already in check_config_sizes, before
/// their shapes are judged): a mismatch is a FormatError naming the folder,
/// the file and the tensor ("checksum mismatch: the file was changed after kq
/// wrote it"). A folder without the record (an older kq's) loads unchecked.
class FileWeights final : public WeightSource {
 public:
  explicit FileWeights(const std::filesystem::path& dir);
  bool contains(const std::string& name) const override { return store_.contains(name); }
  Tensor get(const std::string& name, const Shape& shape, Init init) override;
  Tensor get_transposed(const std::string& name, const Shape& shape, Init init) override;
  /// A BF16/F16 tensor as a heap copy in that dtype (the mapping's pages it
  /// was read from dropped, as for get()'s F32 copies); an F32 one as get().
  /// A copy that cannot be allocated is an OutOfMemory naming the folder, the
  /// tensor, its shape, dtype and file, and the bytes asked.
  Tensor get_in_disk_dtype(const std::string& name, const Shape& shape, Init init) override;
  /// get_in_disk_dtype's copy of a BF16/F16 Conv1D weight [in, out], transposed to [out, in] = `shape` (one
  /// 16-bit allocation, same errors); an F32 one as get_transposed().
  Tensor get_transposed_in_disk_dtype(const std::string& name, const Shape& shape, Init init) override;
  std::unique_ptr<Linear> quantized_linear(const std::string& module, const std::string& file_prefix,
                                           int64_t out, int64_t in, bool bias) override;
  /// An AutoAWQ / AutoGPTQ checkpoint's fused layer "<fused_prefix>.qweight" (...) split into `parts`; empty for
  /// any other folder or a fused layer stored unquantized. Throws FormatError naming the folder, the fused layer,
  /// the safetensors file and the tensor (as quantized_linear), and for a bitsandbytes fused layer (not converted).
  std::vector<std::unique_ptr<Linear>> quantized_fused_linears(const std::string& fused_prefix,
                                                               const std::vector<FusedPart>& parts,
                                                               int64_t in) override;
  /// The tensor's dtype in the folder (F32 when the folder has no such tensor:
  /// get() names the missing tensor).
  DType disk_dtype(const std::string& name) const override;
  /// true when config.json has a kq quantization_config, or is an AutoAWQ / AutoGPTQ / bitsandbytes checkpoint.
  bool quantized() const override { return !quantized_modules_.empty() || hub_.has_value() || bnb_.has_value(); }

  /// Checks the sizes of `config` (read from the folder's config.json)
  /// against the tensors in the folder's safetensors headers, before the
  /// model allocates anything per layer or per size: a hand-edited n_layer
  /// of 30000000 allocated 9 GB before "missing tensor 'transformer.h.2...'",
  /// one of 200000000 failed as "out of memory". Throws FormatError naming
  /// config.json, the key as the file writes it (ModelConfig::size_keys) and
  /// the file when the layer count (n_layer, num_hidden_layers) exceeds the layers the files have tensors for
  /// (transformer.h.N / h.N, model.layers.N: the highest N + 1; with none,
  /// a layer tensor of the other architecture is named, with the model_type
  /// meant); when the token embedding is not [vocab_size, hidden size]; for Llama, when layer
  /// 0's (unquantized) q_proj / k_proj is not [heads × head_dim, hidden].
  /// Fewer layers in the config than in the files is not an error
  /// (warn_unused_tensors says so after the load).
  void check_config_sizes(const ModelConfig& config) const;

  /// Names (sorted) of the tensors in the folder that no get(),
  /// get_transposed() or quantized_linear() call has read, except buffers no
  /// inference code needs (*.rotary_emb.inv_freq, GPT-2's *.attn.bias and
  /// *.attn.masked_bias). Call after the model is built.
  std::vector<std::string> unused_tensors() const;
  /// Reports unused_tensors(), if any, in one kq::warn() call: the folder, how
  /// many, the architecture and layer count of `config`, and the first names
  /// (e.g. extra layers beyond num_hidden_layers), and that a quantized folder
  /// saved from the model leaves them out (Model::unused_source_tensors). Not an error.
  void warn_unused_tensors(const ModelConfig& config) const;
  /// For a kq folder (config.json's quantization_config.modules): checks, once
  /// the model is built, that every listed module was read as a quantized
  /// linear layer. Throws FormatError naming config.json and the module when
  /// one lies in a layer at or beyond the layer count (naming the key,
  /// n_layer / num_hidden_layers as config.json writes it, and the layers:
  /// kq quantize lists only layers the model has), or is not a linear layer
  /// of the architecture (e.g. transformer.wte, transformer.h.0.ln_1).
  void check_quantized_modules_read(const ModelConfig& config) const;

 private:
  Tensor fetch(const std::string& name, const Shape& disk_shape);
  /// The BF16/F16 tensor `name` (`disk_shape` in the file) as a heap copy in its dtype, `transposed` or not;
  /// an allocation that fails is an OutOfMemory naming it. NaN / Inf values refused (FormatError).
  Tensor copy_16bit(const std::string& name, const Shape& disk_shape, bool transposed);
  /// A getter of the folder's tensors for a quantized layer's loader: absent ones (and `hidden`, a bias the
  /// architecture does not have) are undefined; each one handed out is counted (disk_bytes_, used_) and its
  /// name appended to `read`.
  TensorGetter layer_getter(std::vector<std::string>& read, const std::string& hidden);
  /// Rethrows `e`, a quantized layer's loader error, naming the folder, `module` and the safetensors file of
  /// the tensor it names (of `read`, the tensors handed out; else the file of the first).
  [[noreturn]] void raise_in_layer(const std::string& module, const std::vector<std::string>& read,
                                   const FormatError& e) const;
  /// Throws FormatError "missing tensor '<name>' (expected shape ...)", saying
  /// that the file mixes GPT-2's "transformer." prefixed and bare names when
  /// `name` is there under the other form.
  [[noreturn]] void raise_missing(const std::string& name, const Shape& shape) const;
  std::filesystem::path dir_;
  TensorStore store_;
  std::map<std::string, std::string> quantized_modules_;  // module -> quant mode name
  std::optional<HubInt4Config> hub_;                      // an AutoAWQ / AutoGPTQ checkpoint's layout
  std::optional<BnbConfig> bnb_;                          // a bitsandbytes 8-bit or 4-bit (NF4, FP4) checkpoint
  std::set<std::string> used_;                            // tensors read so far
  std::set<std::string> modules_read_;                    // quantized_modules_ keys quantized_linear() looked up
  // A kq folder's checksums; mutable: check_config_sizes (const) verifies the tensors whose shapes it judges.
  mutable io::TensorChecksums checksums_;
};

/// Random parameters, deterministic for (seed, name): a counter-based generator
/// (SplitMix64 of seed, name hash and element index), so the values do not
/// depend on the thread count or on the order tensors are requested in.
class RandomWeights final : public WeightSource {
 public:
  /// `disk_dtype_size`: bytes per element counted by disk_bytes() (2 for BF16/F16, 4 for F32).
  RandomWeights(uint64_t seed, size_t disk_dtype_size) : seed_(seed), disk_elem_(disk_dtype_size) {}
  bool contains(const std::string&) const override { return true; }
  Tensor get(const std::string& name, const Shape& shape, Init init) override;
  Tensor get_transposed(const std::string& name, const Shape& shape, Init init) override {
    return get(name, shape, init);
  }
  /// Makes every linear layer (the lm_head too when `lm_head`) a random op of
  /// `mode` ("bf16"/"f32" or a parse_quant_mode name), without biases (the
  /// random biases are zeros anyway): on CUDA generated on the device
  /// (Backend::random_linear: gpu::random_cuda_linear, same kernels and
  /// weight bytes as a quantized model, other values than the CPU's); on the
  /// CPU the FP32 random weight quantized with quantize_linear. "" = plain FP32.
  /// Throws InvalidArgument for an unknown mode.
  void set_linear_mode(const std::string& mode, bool lm_head);
  std::unique_ptr<Linear> generated_linear(const std::string& module, int64_t out, int64_t in,
                                           Backend& be) override;

 private:
  uint64_t seed_;
  size_t disk_elem_;
  std::string linear_mode_;
  bool lm_head_mode_ = false;
};

}  // namespace kq::models
