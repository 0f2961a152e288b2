#pragma once
// AWQ (activation-aware weight quantization, Lin et al., "AWQ: Activation-aware
// Weight Quantization for LLM Compression and Acceleration", MLSys 2024):
// calibration statistics of every linear layer's input and the per-layer
// search of the input-channel scales. The op it produces is
// kernels/awq_linear.hpp.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kernels/linear.hpp"
#include "kq/model.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"

namespace kq::awq {

/// AWQ's calibration tokens from a UTF-8 text file (`--calibration` of kq
/// quantize, BenchOptions::calibration): the text encoded by `tok`. window:
/// tokens per calibration forward window (collect_activation_stats), for the
/// warning. `source` names where the file came from in messages (the caller's
/// option or field, e.g. "BenchOptions::calibration"). Throws InvalidArgument
/// naming `source` and the file when it is empty or holds only whitespace or
/// fewer than the 2 tokens collect_activation_stats needs (naming the count;
/// and as io::read_utf8_text_file for an unreadable file or invalid UTF-8); a
/// text shorter than one window or than 128 tokens is reported with
/// kq::warn(), naming `source`, the file and its token count, and returned.
std::vector<int32_t> read_calibration_tokens(const std::filesystem::path& file, const Tokenizer& tok, int64_t window,
                                             std::string_view source);

/// What one linear layer saw during calibration.
struct ActivationStats {
  std::vector<double> sum_abs;  ///< Σ |x_k| over all rows, [K]
  int64_t rows = 0;             ///< rows seen
  std::vector<float> samples;   ///< a subset of the rows, row-major [sample_rows, K] (F32)
  int64_t sample_rows = 0;
};

/// Runs `model` (FP32 or partly quantized, on the CPU) over `tokens` in
/// windows of options.window tokens (at most options.max_tokens in all; each
/// window starts at position 0, as the perplexity protocol does) and records,
/// for every linear layer whose name `want` accepts, Σ|x_k| and about one
/// input row in tokens / search_rows, picked by a hash of the row index (at
/// most options.search_rows rows; every layer keeps the same rows).
/// The model's ops are restored afterwards, also when an exception leaves.
/// Throws InvalidArgument for a model not on the CPU, empty tokens, a token
/// outside [0, vocab_size) (naming QuantizeOptions::calibration.tokens and the
/// index), a window < 2 or > max_positions, search_rows < 1, or a grid outside
/// [1, kMaxAwqGrid] (naming CalibrationOptions::grid), all before any window runs;
/// throws Error naming the first layer (in the forward order) whose inputs were
/// not finite (inf or NaN) in the calibration forward pass.
std::map<std::string, ActivationStats> collect_activation_stats(Model& model, std::span<const int32_t> tokens,
                                                                const CalibrationOptions& options,
                                                                const std::function<bool(const std::string&)>& want);

/// The result of the scale search of one layer.
struct ScaleSearch {
  std::unique_ptr<Linear> op;  ///< the AwqLinear
  float alpha = 0;             ///< chosen α: s_k ∝ mean|x_k|^α (0 = plain round-to-nearest)
  bool duo = false;            ///< s_k ∝ mean|x_k|^α / mean_n(|W_nk| / group absmax)^(1−α) (AutoAWQ's duo scaling)
  double rtn_error = 0;        ///< relative output error ||X(W−Ŵ)ᵀ||² / ||XWᵀ||² at α = 0
  double error = 0;            ///< the same for the op returned (<= rtn_error)
  bool clipped = false;        ///< the clipping search lowered the error and was kept
};

/// AWQ's grid search for one layer: for α = 0, 1/grid, …, (grid−1)/grid,
/// s_k = max(mean|x_k|, 1e-4)^α normalised by sqrt(max s · min s) (the AWQ
/// reference code's α grid and normalisation; it applies the 1e-4 floor after
/// the power, mean|x_k|^α clamped to >= 1e-4, which differs only for channels
/// with mean|x_k| < 1e-4), and the same α grid for AutoAWQ's "duo scaling"
/// s_k = mean|x_k|^α / (w_k^(1−α) + 1e-4), w_k the mean over rows of |W_nk|
/// divided by the absmax of its quantization group; Ŵ = Q(W·diag(s))·diag(1/s)
/// with Q the round-to-nearest INT4 of awq_base_spec(spec); keeps the
/// candidate whose output error on the sampled rows is smallest (ties: the
/// first, paper's form before duo, smaller α before larger). With `clip`,
/// then weight clipping as in the reference code's auto_clip: per row and
/// group, the range ±r·absmax (r = 1, 0.95, …, 0.55) with the smallest output
/// error of that group, kept when it lowers the layer's error. Unlike the
/// reference (llm-awq and AutoAWQ skip q_proj / k_proj, "due to qk bmm"), kq
/// clips every linear, q and k included: measured on llama-small (full
/// WikiText-2 test, demo calibration text) +4.38 % perplexity with it
/// against +4.60 % with q/k unclipped (tester 28). Candidates whose scaled
/// weight or error is not finite (a weight near FLT_MAX times s) are skipped;
/// α = 0 (plain round-to-nearest) always stands, so the result is never
/// worse than it (error NaN when no output error is finite).
/// weight: F32 [N, K]; bias: F32 [N] or undefined. `scale` false: s = 1
/// alone (α = 0, plain round-to-nearest of W), the clipping still searched,
/// as AutoAWQ quantizes a layer whose s it cannot fold into the operator before
/// it (QuantizeOptions::awq_unit_scale_layers). Throws InvalidArgument for
/// a non-AWQ spec, stats of another K or without sampled rows, a grid
/// outside [1, kMaxAwqGrid].
ScaleSearch search_scales(const Tensor& weight, const Tensor& bias, const ActivationStats& stats,
                          const QuantSpec& spec, int grid, bool clip = true, bool scale = true);

/// The same search for linears that read the same input (Llama's q/k/v, or
/// gate/up): one s for the group, as the AWQ reference code shares it, chosen
/// (α, then clipping) on the output error of all its rows together (the
/// concatenated linear outputs; the reference measures instead the output of
/// the whole attention or MLP block, its module2inspect),
/// so the members' ops hold the same input scales and a backend can still
/// fuse them (the GPU's fused q/k/v and gate/up GEMVs). weights: F32 [N_i, K]
/// each, one K; biases: F32 [N_i] or undefined, one per weight; stats: the
/// group's input (any member's). Returns one ScaleSearch per member, in
/// order, each with the group's α and errors. Throws as search_scales, and
/// InvalidArgument for no weights, a bias count that differs, or members of
/// different K.
std::vector<ScaleSearch> search_group_scales(std::span<const Tensor> weights, std::span<const Tensor> biases,
                                             const ActivationStats& stats, const QuantSpec& spec, int grid,
                                             bool clip = true, bool scale = true);

}  // namespace kq::awq
