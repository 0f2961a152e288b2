#pragma once
// Whole-model quantization: the C++ take on the specification's
// `quantize_dynamic(model, {Linear}, qint8)` and `LLMOptimizer(config).load_model(path)`.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kq/context.hpp"
#include "kq/model.hpp"
#include "kq/quantize.hpp"

namespace kq {

/// Calibration for modes that look at activations (AWQ): text the model runs
/// over before quantization. Use text the quality is not reported on (e.g.
/// WikiText-2 *valid* when reporting on *test*).
struct CalibrationOptions {
  /// Token ids of the calibration text (Tokenizer::encode); empty = none. AWQ
  /// needs at least 2 (of the first max_tokens); a few thousand give reliable scales.
  std::vector<int32_t> tokens;
  /// Tokens per forward window, each starting at position 0 (0 = min(512, the model's context)).
  int64_t window = 0;
  /// Tokens used at most (the first ones of `tokens`) for the input statistics.
  int64_t max_tokens = 32768;
  /// Input rows kept per layer for AWQ's output-error searches (spread over the
  /// tokens). The searches cost about 30 · rows · N · K multiply-adds per layer.
  int64_t search_rows = 1024;
  /// AWQ: grid points of α in [0, 1) (the AWQ reference code uses 20), in
  /// [1, kMaxAwqGrid]; each point costs two quantizations and error evaluations per layer.
  int grid = 20;
};

/// Largest CalibrationOptions::grid accepted: 50 times the AWQ reference
/// code's 20 points (a grid of 1000 takes about 50 times as long); a finer
/// grid of α only refines a choice that 20 points already make.
inline constexpr int kMaxAwqGrid = 1000;

/// Which linear layers of a model to quantize, and how.
struct QuantizeOptions {
  /// The weight quantization applied to every selected linear layer (parse_quant_mode("int8"), ...).
  QuantSpec spec = parse_quant_mode("int8");
  /// Quantize the output projection to the vocabulary too (default: keep it,
  /// like the embeddings, in its original precision).
  bool quantize_lm_head = false;
  /// PCRE2 regular expressions (Perl syntax: lookarounds, "\\Q...\\E" and
  /// possessive quantifiers included; case-sensitive unless "(?i)") searched,
  /// not anchored, in each linear layer's module name (e.g. "mlp\\.down_proj",
  /// "layers\\.0\\."): a layer matching any of them stays in high precision, as
  /// bitsandbytes' skip-modules list does. Checked and matched by PCRE2 alone,
  /// within bounds: at most 1024 bytes and 32
  /// nested parentheses, and no catastrophic backtracking (e.g. "(.*)*x$");
  /// beyond them, or not valid PCRE2, the pattern is an InvalidArgument.
  std::vector<std::string> keep_patterns;
  /// Calibration text for AWQ modes (required by them, unused by the others).
  CalibrationOptions calibration;
  /// Per-layer overrides (mixed precision, e.g. AdaptivePlan::to_options()):
  /// module name (LinearSlot::name) -> the spec for that layer, or
  /// std::nullopt to keep it in its original precision. An override decides
  /// its layer whatever quantize_lm_head and keep_patterns say; layers not in
  /// the map get `spec`. A name that is no linear layer of the model is an InvalidArgument.
  std::map<std::string, std::optional<QuantSpec>> layer_specs;
  /// AWQ modes: layers (LinearSlot names) whose per-input-channel scales s are
  /// fixed at 1 (plain round-to-nearest of W, AWQ's clipping still searched),
  /// as AutoAWQ leaves a layer whose s cannot be folded exactly into the
  /// operator before it (a grouped-query attention's o_proj: see
  /// awq_unit_scale_layers in kq/awq_export.hpp, which save_awq_model needs).
  /// A member of a group sharing s (q/k/v, gate/up) fixes the group's s. A name
  /// that is no linear layer of the model is an InvalidArgument; unused by other modes.
  std::vector<std::string> awq_unit_scale_layers;
};

/// What quantize_model did to one linear layer.
struct LayerQuantization {
  std::string name;           ///< module name, e.g. "model.layers.0.mlp.down_proj"
  int64_t out_features = 0;   ///< N
  int64_t in_features = 0;    ///< K
  std::string format;         ///< the op's format after the call ("f32" when kept; "bf16"/"f16" when
                              ///< kept from a 16-bit checkpoint, see Model::hold_unquantized_in_disk_dtype)
  size_t bytes_before = 0;    ///< weight bytes before, as the FP32 op Model::load builds (a 16-bit op,
                              ///< e.g. load_to_quantize's, counted as its F32 conversion)
  size_t bytes_after = 0;     ///< weight bytes after
  bool quantized = false;     ///< false: kept in high precision (lm_head or keep_patterns)
  /// AWQ modes: the α chosen (s_k ∝ mean|x_k|^α) and the relative output error
  /// on the calibration rows with plain round-to-nearest (α = 0) and with AWQ
  /// (for a layer of a group sharing s: the group's, over all its outputs); -1 otherwise.
  double awq_alpha = -1, awq_rtn_error = -1, awq_error = -1;
  /// AWQ modes: s also divides by the weight's mean normalized magnitude per
  /// input channel to the power 1 − α (AutoAWQ's "duo scaling"), see awq_alpha.
  bool awq_duo = false;
  /// AWQ modes: the layers that share this layer's s, searched jointly for them
  /// (linears reading one input: Llama's q/k/v, gate/up), this one included, in
  /// the model's order; awq_rtn_error and awq_error are then the group's, the
  /// same for each of them. Empty when its s was searched for it alone.
  std::vector<std::string> awq_group;
  /// AWQ modes: s was fixed at 1 (QuantizeOptions::awq_unit_scale_layers), not searched.
  bool awq_unit_scale = false;
};

/// Summary of quantize_model.
struct QuantizeReport {
  std::vector<LayerQuantization> layers;
  /// Bytes of the quantized layers' weights, before (as FP32, LayerQuantization::bytes_before) and after.
  size_t quantized_bytes_before = 0, quantized_bytes_after = 0;
  /// Bytes of the quantized layers' weight matrices alone (codes, scales, zero
  /// points, double-quant data; the F32 biases, which stay unquantized, excluded).
  size_t quantized_matrix_bytes = 0;
  /// Elements of the quantized layers' weight matrices (real, unpadded).
  int64_t quantized_elements = 0;
  double seconds = 0;  ///< wall-clock time of the quantization
  /// QuantizeOptions::keep_patterns that matched no linear layer (each also reported with kq::warn()).
  std::vector<std::string> unmatched_keep_patterns;
  /// 8 · quantized_matrix_bytes / quantized_elements: bits per weight as held in memory.
  double bits_per_weight() const {
    return quantized_elements ? 8.0 * double(quantized_matrix_bytes) / double(quantized_elements) : 0.0;
  }
};

/// Quantizes `model`'s linear layers in place (round-to-nearest with the
/// spec's scales; the layers keep their names). Once a layer is quantized,
/// what stays unquantized (embedding tables, the lm_head unless quantized,
/// kept layers) is held in its on-disk dtype when that was BF16/F16
/// (Model::hold_unquantized_in_disk_dtype: the same values in half the bytes
/// of F32); norms stay F32. A layer that is already quantized is an error.
/// A layer held in 16 bits (load_to_quantize) is converted to FP32 only while
/// it is quantized (AWQ: while its group's scales are searched), then freed.
/// AWQ modes first run the model over options.calibration.tokens (on the CPU)
/// to collect each layer's input statistics, then search the scales: one s
/// per Model::fusion_groups() group whose members all get the same AWQ spec
/// (q/k/v, gate/up, as AWQ's reference code does; the GPU then still fuses
/// them), one s per layer otherwise. Runs on the model's CPU threads,
/// resolve_threads(model.context().threads) (set them with Model::set_context),
/// whatever OpenMP's default; round-to-nearest results do not depend on the
/// count, AWQ's may in their last bits (its calibration and search run sgemm).
/// Throws InvalidArgument for an invalid spec, a malformed keep pattern (named),
/// a model.context().threads of 0 with OpenMP's default above kMaxThreads
/// (resolve_threads), a LinearSlot holding a null op or an op of another shape
/// (Model::check_linear_layers, before anything is quantized), a layer to
/// quantize whose op's dequantized_weight() is undefined, not a float tensor
/// or not [out_features, in_features] (named; BF16 / F16 ones are converted),
/// an already-quantized layer (named), an AWQ mode with fewer than 2 calibration tokens,
/// with a calibration token outside [0, vocab_size) (naming
/// QuantizeOptions::calibration.tokens and the index) or with a
/// CalibrationOptions::grid outside [1, kMaxAwqGrid] (named; both checked
/// before the calibration runs), or a
/// layer_specs entry that names no linear layer or holds an invalid spec (named), an awq_unit_scale_layers
/// entry that names no linear layer (named), and
/// while another thread's call on `model` runs (Model::InUse: "quantize_model called while another call on the
/// same Model runs ..."; a forward() from another thread meanwhile throws likewise). A keep pattern that matches
/// no layer is not an error: it is listed in QuantizeReport::unmatched_keep_patterns and
/// reported with kq::warn() naming the pattern.
QuantizeReport quantize_model(Model& model, const QuantizeOptions& options);

/// Loads DIR (a Hugging Face folder: unquantized weights) and returns a
/// quantized copy; the folder is not modified. The model, the report and the
/// warnings are those of Model::load(dir) followed by quantize_model(model,
/// options), but without AWQ and layer_specs each linear layer is quantized
/// as it is read (Model::load's LinearTransform), and a kept one held in its
/// BF16/F16 disk dtype then: the host holds one layer's FP32 weights at a time.
/// The embedding tables and an unquantized lm_head (tied or not) of a BF16/F16
/// checkpoint are read in that dtype (Model::load's tables_in_disk_dtype),
/// never as F32, so the peak is about the quantized model (its 16-bit
/// embeddings included) and one layer's FP32 weights, not the whole FP32 model
/// (a 7B BF16 checkpoint: about 28 GB; docs/PERFORMANCE.md of the source
/// repository has measurements). AWQ modes
/// calibrate on the whole model and layer_specs name its layers: they load it
/// first with load_to_quantize (a BF16/F16 checkpoint held in that dtype,
/// embeddings included: half the bytes of FP32), then quantize it with
/// quantize_model, which converts each layer (an AWQ group: q/k/v, gate/up)
/// to FP32 only while it searches and quantizes it: the peak is about the
/// 16-bit model plus one layer's (group's) FP32 weights; the results are
/// those of the FP32 load bit for bit. The reading and the quantization run on
/// ctx.threads CPU threads (resolve_threads). report->seconds counts the
/// quantization, not the reading. A KernelQuant quantized folder
/// (save_quantized_model's output) is refused once loaded: InvalidArgument
/// naming a quantized layer ("the model is already quantized ..."); load it
/// with Model::load instead. Quantization runs on the host; for ctx.device ==
/// CUDA the quantized model is then moved to the GPU (Model::to_device; 4-bit
/// and 8-bit layers keep their codes). Same errors as Model::load,
/// quantize_model and Model::to_device; a layer that fails to quantize is
/// reported when it is read, before the rest of the folder.
std::unique_ptr<Model> load_quantized(const std::filesystem::path& dir, const QuantizeOptions& options,
                                      const ExecContext& ctx = {}, QuantizeReport* report = nullptr);

/// Loads DIR (a Hugging Face folder: unquantized weights) on the CPU for
/// quantize_model or quantize_model_adaptive (kq/adaptive.hpp) without an
/// FP32 copy of the whole model: as Model::load(dir, ctx), but each linear
/// layer of a BF16/F16 checkpoint is held in that dtype (make_linear_w16;
/// format() "bf16" / "f16"), its FP32 copy given back as soon as it is read,
/// and the embedding tables and the lm_head are read in it (Model::load's
/// tables_in_disk_dtype). A 7B BF16 checkpoint then takes about 14 GB instead
/// of 28. The values are those of the FP32 load (converted exactly), so the
/// quantization and the adaptive analysis, which read each layer's weight
/// converted to FP32 one layer at a time, give the same results; a forward
/// pass (AWQ's calibration) differs at most by summation order
/// (make_linear_w16). F32 checkpoints load as with Model::load; so does a
/// quantized folder, which quantize_model then refuses. What quantize_model
/// reports as LayerQuantization::bytes_before is the FP32 op's bytes, as
/// after Model::load. A model quantize_model leaves unquantized (every layer
/// kept) stays 16-bit; Model::hold_unquantized_in_f32 makes it Model::load's. Same errors as
/// Model::load; InvalidArgument for a ctx.device other than the CPU.
std::unique_ptr<Model> load_to_quantize(const std::filesystem::path& dir, const ExecContext& ctx = {});

/// Writes `model` (loaded from a folder, then quantized) as a KernelQuant
/// quantized model folder at `out`:
///   config.json       the source config plus "quantization_config":
///                     {"quant_method": "kq", "format_version": 1, "mode": <QuantSpec::name()>
///                      ("mixed" when options.layer_specs is not empty),
///                      "modules": {<module name>: <mode name>, ...}, "quantize_lm_head": bool,
///                      "keep_patterns": [...],
///                      "checksums": {"algorithm": "xxh3-64", "files": {"model.safetensors":
///                                    {<tensor name>: <16 hex digits>, ...}}}}
///                     (the checksums: XXH3-64 of each tensor's name, dtype, shape and bytes,
///                     which Model::load verifies as it reads the tensors; a folder without
///                     them, from an older kq, loads unchecked)
///   model.safetensors every non-quantized tensor the model uses copied unchanged
///                     from the source (names and dtypes as on disk; those it does not
///                     use, Model::unused_source_tensors, are left out; a weight the source
///                     stores fused, Phi-3's qkv_proj / gate_up_proj, is written as the
///                     rows of its layers kept in high precision, under their names:
///                     "...self_attn.k_proj.weight"), and for each quantized
///                     module "<module>.<part>" tensors (Linear::export_tensors:
///                     U8 codes, F32 scales, ...; layouts in src/formats/*.hpp
///                     of the source repository)
///   side files      copied byte for byte from the source folder when there:
///                     vocab.json, merges.txt, tokenizer.json, tokenizer_config.json,
///                     special_tokens_map.json, generation_config.json,
///                     added_tokens.json, chat_template.json, chat_template.jinja
///                     (checked first: check_quantized_side_files).
/// Writing is atomic (a staging folder renamed into place: a crash or a full
/// disk never leaves a half-written folder that looks valid). Reloading with
/// Model::load gives bit-identical tensors.
/// `options` must be those the model was quantized with: config.json records
/// them, so each linear layer must be held as quantize_model(model, options)
/// leaves it (its layer_specs entry; else kept in high precision when it is
/// the lm_head without quantize_lm_head or a keep pattern matches it; else
/// quantized to options.spec).
/// Throws InvalidArgument if the model has no source folder (random weights),
/// a LinearSlot holds a null op or an op of another shape
/// (Model::check_linear_layers: such a folder would not load again), no
/// layer is quantized, a layer is not held as `options` say (naming the
/// layer and the option: a quantized layer of another format than
/// options.spec or its layer_specs entry, a quantized layer that a keep
/// pattern matches or an lm_head quantized without quantize_lm_head, a
/// layer in high precision that the options would quantize), a keep pattern
/// is malformed, or `out` exists and is not empty without `overwrite`; FormatError for a side
/// file that check_quantized_side_files refuses (before anything is written),
/// and when the folder the model was loaded from (Model::source_dir(), read
/// again for config.json, side files and unquantized tensors) is gone or no
/// longer holds a config.json; Error on I/O failure.
void save_quantized_model(Model& model, const QuantizeOptions& options, const std::filesystem::path& out,
                          bool overwrite = false);

/// The checks save_quantized_model makes of `out` before writing, for callers
/// that want to fail before loading and quantizing (`kq quantize` does): the
/// folder `out` would be created in exists and is writable (also when `out`
/// exists: the new folder is written beside it and renamed over it, said so
/// in the message); `out` is not a
/// file; a non-empty `out` needs `overwrite` and then must be a folder
/// save_quantized_model wrote (a config.json that Model::load can read, with a
/// kq quantization_config; no other files) or save_gptq_model wrote (its GPTQ
/// quantization_config naming kq in meta.quantizer, and quantize_config.json),
/// whether `src` is given or empty; without `overwrite` the error of a
/// non-empty `out` says overwrite = true replaces it only for such a folder,
/// and for another one why overwrite would not (choose another output folder); `out` is neither the source folder
/// `src` nor contains it (skipped when `src` is empty); `out` is neither the current working directory nor
/// contains it (renamed over it, the process would be left in a deleted folder). Throws InvalidArgument
/// naming `out` ("output folder '<out>': ...") and, for a config.json that
/// cannot be read (bad JSON, a UTF-8 byte-order mark), why.
void check_quantized_output(const std::filesystem::path& out, const std::filesystem::path& src, bool overwrite);

/// The checks save_quantized_model makes of the side files it copies from the
/// source folder `src`, for callers that want to fail before loading and
/// quantizing (`kq quantize` does). The loaders that will read the copies run
/// on the originals, so that a file they would refuse in the quantized folder
/// is refused now: Tokenizer::load(src) (tokenizer.json, vocab.json +
/// merges.txt, tokenizer_config.json; when none of the first three is there,
/// a warning (kq::warn) that the quantized folder will have no tokenizer)
/// and, when `vocab_size` > 0, Tokenizer::check_fits(vocab_size);
/// and the end-of-sequence ids `kq generate` reads (generation_config.json's
/// eos_token_id, else config.json's: integers or lists of them in 0 ..
/// 2^31-1; ids past the vocabulary are warned about and ignored). Every
/// side file that is there must be a
/// regular file of at most 1 GiB. Files no loader reads
/// (special_tokens_map.json, added_tokens.json, chat_template.json,
/// chat_template.jinja) are not parsed. A tokenizer.json that is well formed
/// but not one kq runs (Unsupported) is warned about (kq::warn), not refused.
/// Throws FormatError naming the file, or naming `src` when it is not a folder
/// (missing, or a file) or holds kq quantize's staging marker .kq-staging (an
/// unfinished output, as load_model_config refuses it).
void check_quantized_side_files(const std::filesystem::path& src, int64_t vocab_size);

/// Configuration of an LLMOptimizer (the specification's optimizer config).
struct OptimizerConfig {
  /// Quantization to apply at load; std::nullopt keeps the model as loaded.
  std::optional<QuantizeOptions> quantization;
  /// Device and threads.
  ExecContext context;
};

/// Loads models with a quantization config, as the specification's
/// `LLMOptimizer(config).load_model(path)`:
///   kq::LLMOptimizer opt({.quantization = kq::QuantizeOptions{.spec = kq::parse_quant_mode("nf4")}});
///   auto model = opt.load_model("models/gpt2-tiny");
/// Thread safety: load_model is const but records its report in the object
/// (last_report), unsynchronized: calls of load_model on one LLMOptimizer
/// from several threads at once, or load_model in one thread while another
/// reads last_report, are a data race. Give each thread its own LLMOptimizer
/// (it is cheap: a copy of the config), or call load_quantized, which returns
/// the report through its own argument.
class LLMOptimizer {
 public:
  explicit LLMOptimizer(OptimizerConfig config) : config_(std::move(config)) {}
  /// Loads and (optionally) quantizes a model folder. Without a quantization
  /// (config().quantization empty) it is Model::load: a Hugging Face or a
  /// KernelQuant quantized folder. With one it is load_quantized (a Hugging
  /// Face folder; a quantized folder is refused with InvalidArgument) and
  /// replaces last_report() (not thread-safe, see the class). Same errors as
  /// Model::load / load_quantized.
  std::unique_ptr<Model> load_model(const std::filesystem::path& dir) const;
  /// The report of the last load_model call that quantized (empty otherwise);
  /// the reference stays valid, its content changes with the next such call.
  const QuantizeReport& last_report() const { return report_; }
  const OptimizerConfig& config() const { return config_; }

 private:
  OptimizerConfig config_;
  mutable QuantizeReport report_;
};

}  // namespace kq
