#pragma once
// Entropy-based adaptive precision (the specification's "analyse each layer,
// allocate a precision per layer to reach a target memory reduction at least
// quality loss"; its Python names: AllocationStrategy, PrecisionFormat, a
// per-layer analysis and a plan): every linear layer is analysed (Shannon
// entropy of its weights, measured reconstruction error of each candidate
// format), then a knapsack over the layers picks one candidate per layer so
// that the memory reduction reaches the target and the estimated quality loss
// is minimal — in the spirit of the mixed-precision bit allocation of HAQ /
// HAWQ (per-layer sensitivity × quantization perturbation, minimised under a
// size budget), with weight statistics in place of Hessians or RL.
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "kq/optimizer.hpp"
#include "kq/quantize.hpp"

namespace kq {

class Model;

/// How a layer's sensitivity s_i (the weight of its quantization error in the
/// estimated loss s_i · e_ic) is obtained.
enum class AllocationStrategy {
  /// The specification's default: s_i = H_i / 8, the Shannon entropy of the
  /// layer's weight histogram (weight_entropy_bits, 256 bins) normalised by its
  /// maximum log2(256) = 8 bits. Layers whose weights use the range more
  /// evenly carry more information per weight and weigh more.
  Entropy,
  /// s_i = 1: the measured relative reconstruction error alone.
  ReconstructionError,
  /// Baseline without a per-layer choice: every layer gets the same option,
  /// the one with the most bytes whose uniform use still meets the target.
  Uniform,
};

/// "entropy", "error", "uniform"; "unknown(N)" for a value outside the enum (see dtype_name).
std::string_view allocation_strategy_name(AllocationStrategy s);

/// Parses "entropy", "error" (also "reconstruction-error", '-'/'_' alike) or
/// "uniform", case-insensitive. Throws InvalidArgument naming the value and
/// listing the valid names.
AllocationStrategy parse_allocation_strategy(std::string_view s);

/// What plan_adaptive_precision may choose from, and the target.
struct AdaptiveOptions {
  /// Fraction to remove of the planned layers' bytes as the model holds them
  /// unquantized: each layer's weight matrix in the checkpoint's on-disk dtype
  /// (N·K times 4 for F32, 2 for a BF16 / F16 checkpoint: what the keep option
  /// holds, Model::hold_unquantized_in_disk_dtype; LinearSlot::disk_dtype,
  /// recorded at load, so also for a layer whose op the caller replaced, e.g.
  /// by a wrapper of their own) and its bias as held (F32, 4·N, which every
  /// option keeps). 0.80 keeps at most 20 % of them; keeping
  /// every layer removes nothing, whatever the dtype. NF4 everywhere removes
  /// about 87 % of an F32 checkpoint's bytes but only about 74 % of a 16-bit
  /// one's (its weights already take half the bytes), so the default 0.80 is
  /// beyond reach on a BF16 / F16 checkpoint (check_adaptive_options names the
  /// largest reachable target). In (0, 1), at least 0.000001 away from
  /// both ends: round(target · 10^6) in [1, 999999]. Any value in between is
  /// planned for as given (0.8000004 too); adaptive_mode_name names the target
  /// rounded to 0.000001 (P = 100 · target to 4 decimals).
  double target_reduction = 0.80;
  AllocationStrategy strategy = AllocationStrategy::Entropy;
  /// Quantized formats a layer may get (default INT8 W8A8 per-channel, about
  /// 75 % reduction, and NF4 block 64 with double quantization, about 87 %).
  /// Each must pass validate_quant_spec; AWQ specs are refused (they need calibration).
  std::vector<QuantSpec> candidates{parse_quant_mode("int8"), parse_quant_mode("nf4")};
  /// Whether a layer may also stay unquantized (zero error, 0 % reduction),
  /// priced as it is held once the model is quantized: in its on-disk dtype,
  /// F32, or BF16 / F16 for a layer of a 16-bit checkpoint
  /// (Model::hold_unquantized_in_disk_dtype). A layer holding a caller's own
  /// op (a Linear that is not kq's, e.g. a wrapper) is kept as it is, so it
  /// is priced at the op's weight_bytes() less its bias (possibly more than
  /// its on-disk bytes: keeping it then removes less than nothing).
  bool allow_keep = true;
  /// As QuantizeOptions: analyse and quantize the output projection too
  /// (default: it stays in its original precision and is not part of the budget).
  /// Not for an lm_head tied to the token embedding, which the input side keeps:
  /// quantizing it would add a second copy, so the plan leaves it (kq::warn says
  /// so) and AdaptivePlan::quantize_lm_head is false.
  bool quantize_lm_head = false;
  /// As QuantizeOptions::keep_patterns: matching layers stay in high precision
  /// and are not part of the budget: target_reduction then applies to the
  /// other layers alone (AdaptivePlan::kept_bytes and overall_reduction give
  /// the figures of all of them).
  std::vector<std::string> keep_patterns;
};

/// Number of histogram bins of weight_entropy_bits (so H is in [0, 8] bits).
inline constexpr int kEntropyBins = 256;

/// Shannon entropy, in bits, of a weight tensor's value distribution: each
/// w is mapped to u = w / absmax in [-1, 1] (absmax over the tensor) and counted in
/// bin min(floor((u + 1) / 2 · 256), 255) of 256 equal bins; with p_b the
/// fraction of weights in bin b, H = −Σ_b p_b · log2 p_b. Uniform occupancy of
/// the bins gives 8, a constant tensor (or all zeros, or one element) 0.
/// w: F32, any shape, finite. Throws InvalidArgument for another dtype, an
/// empty tensor or a non-finite value.
double weight_entropy_bits(std::span<const float> w);

/// One option of one layer in a plan.
struct CandidateAnalysis {
  /// The quantization, or std::nullopt for keeping the layer unquantized.
  std::optional<QuantSpec> spec;
  /// spec->name(), or the kept dtype: "f32", "bf16" or "f16" (AdaptiveOptions::allow_keep; a caller's own
  /// op: its Linear::format()).
  std::string format;
  /// Bytes of the weight matrix in this option (quantized_weight_bytes, or N·K times
  /// the kept dtype's size; a caller's own op kept: its weight_bytes() less its bias), bias excluded.
  size_t bytes = 0;
  /// Measured relative reconstruction error ||W − Q(W)||² / ||W||² of the real
  /// quantizer's round trip (quantize_linear, then dequantized_weight); 0 when kept or W = 0.
  double rel_error = 0;
  /// Estimated loss: sensitivity · rel_error (what the allocator minimises, summed over layers).
  double est_loss = 0;
};

/// The analysis of one linear layer and the option chosen for it.
struct LayerAnalysis {
  std::string name;         ///< module name (LinearSlot::name)
  int64_t N = 0, K = 0;     ///< out / in features of W [N, K]
  size_t bias_bytes = 0;    ///< bytes of the F32 bias (4·N, 0 without one): the same in every option
  /// The layer's on-disk dtype (LinearSlot::disk_dtype: F32, or BF16 / F16
  /// for a 16-bit checkpoint), which kq's own op is held in unquantized (the
  /// keep option's) and which its matrix counts in AdaptivePlan::bytes_before
  /// (N·K · dtype_size(held)), whatever op the slot holds.
  DType held = DType::F32;
  double entropy_bits = 0;  ///< weight_entropy_bits(W), in [0, 8]
  double sensitivity = 0;   ///< s_i (see AllocationStrategy)
  std::vector<CandidateAnalysis>
      candidates;  ///< AdaptiveOptions::candidates in order, then "keep" if allowed
  int chosen = 0;  ///< index into candidates
  const CandidateAnalysis& choice() const { return candidates.at(size_t(chosen)); }
};

/// The result of plan_adaptive_precision.
struct AdaptivePlan {
  std::vector<LayerAnalysis> layers;  ///< the quantizable layers, in model order
  AllocationStrategy strategy = AllocationStrategy::Entropy;
  double target_reduction = 0;
  /// Σ (N·K · dtype_size(held) + bias_bytes) over the layers (the layers
  /// unquantized, as the model holds them: 4 bytes per weight for an F32
  /// checkpoint, 2 for a BF16 / F16 one) and Σ (chosen option's bytes +
  /// bias_bytes): the bytes the target refers to, and those
  /// quantize_model_adaptive's QuantizeReport counts for the same layers.
  size_t bytes_before = 0, bytes_after = 0;
  double achieved_reduction = 0;  ///< 1 − bytes_after / bytes_before (>= target_reduction)
  double estimated_loss = 0;      ///< Σ of the chosen options' est_loss
  /// Whether the knapsack was solved exactly (false: allocate_precision fell
  /// back to its greedy, the Pareto front having outgrown max_exact_states;
  /// always true for the Uniform strategy).
  bool exact = true;
  bool quantize_lm_head = false;
  std::vector<std::string> keep_patterns;
  /// The linear layers that keep_patterns leave out of the plan (the lm_head
  /// only when the plan would otherwise have planned it): their number and
  /// their bytes as the model holds them unquantized (N·K · size of the
  /// on-disk dtype + bias), counted like bytes_before. They are not part of
  /// bytes_before, of the budget or of target_reduction: the target applies to
  /// the planned layers alone. 0 without keep patterns.
  int kept_layers = 0;
  size_t kept_bytes = 0;
  /// The reduction of all the linear layers the plan covers or keep_patterns
  /// keep: 1 − (bytes_after + kept_bytes) / (bytes_before + kept_bytes),
  /// never more than achieved_reduction (equal without kept layers).
  double overall_reduction() const {
    const double before = double(bytes_before + kept_bytes);
    return before > 0 ? 1.0 - double(bytes_after + kept_bytes) / before : 0.0;
  }
  /// QuantizeOptions that apply the plan: layer_specs holds every planned
  /// layer (std::nullopt for a kept one); spec is the first candidate (it
  /// applies to no planned layer); a saved folder's mode is then "mixed".
  /// A plan without layers (e.g. a default-constructed AdaptivePlan{}) is not
  /// refused: its options have an empty layer_specs and QuantizeOptions'
  /// default spec, INT8 W8A8, so quantize_model then quantizes to INT8 every
  /// linear layer that the plan's keep_patterns and quantize_lm_head do not
  /// keep: a uniform quantization, not a plan. Make plans with
  /// plan_adaptive_precision (it never returns one without layers).
  /// Throws InvalidArgument naming the layer when a layer's `chosen` is not
  /// an index into its candidates (a hand-edited plan), as lowest_precision_spec.
  QuantizeOptions to_options() const;
};

/// Pareto-front states above which allocate_precision falls back to its greedy
/// (2^18 = 262,144; a state is 24 bytes, and one front is kept per layer).
inline constexpr size_t kMaxExactKnapsackStates = size_t(1) << 18;

/// One option of one layer for allocate_precision.
struct AllocationChoice {
  size_t bytes = 0;  ///< memory of the layer in this option
  double loss = 0;   ///< estimated loss (>= 0) of the layer in this option
};

/// The multiple-choice knapsack of the plan: picks one option per layer
/// (returned as indices into each layer's options) with Σ bytes <=
/// budget_bytes and Σ loss minimal. Exact: a dynamic program over the Pareto
/// front of (bytes, loss) partial sums, states that cannot fit the budget
/// pruned. When the front would exceed max_exact_states states (huge models),
/// it falls back to the greedy of the mixed-precision literature: start every
/// layer at its smallest option, then repeatedly take the upgrade (layer,
/// option) with the largest loss reduction per extra byte that still fits,
/// until none does (optimal for the LP relaxation; the integer result can
/// miss the optimum by less than one upgrade's gain). Deterministic: ties go
/// to fewer bytes, then to the lower option index of the earlier layer.
/// Throws InvalidArgument for a layer without options, a negative or
/// non-finite loss, byte counts whose sum over the layers overflows size_t,
/// or a budget below Σ of each layer's smallest option (naming both byte
/// counts). *exact (when given) says whether the result is
/// the exact one (false: the greedy was used).
std::vector<int> allocate_precision(const std::vector<std::vector<AllocationChoice>>& layers,
                                    size_t budget_bytes, size_t max_exact_states = kMaxExactKnapsackStates,
                                    bool* exact = nullptr);

/// Analyses every quantizable linear layer of `model` (not the lm_head unless
/// options.quantize_lm_head, none matching options.keep_patterns; the model is
/// not modified) and allocates an option per layer: with budget = (1 −
/// target_reduction) · bytes_before (the layers unquantized, in their on-disk
/// dtype LinearSlot::disk_dtype, also where the slot holds a caller's own op,
/// biases included), allocate_precision over est_loss
/// (Entropy, ReconstructionError) or the uniform choice (Uniform). Each
/// candidate is quantized once per layer to measure its error, so this takes
/// about as long as quantizing the model once per candidate, on the model's
/// CPU threads (resolve_threads(model.context().threads), as quantize_model).
/// Throws InvalidArgument for target_reduction outside (0, 1) or not finite,
/// a strategy outside AllocationStrategy (e.g. AllocationStrategy(9)), no
/// candidates, an invalid or AWQ candidate (named), two equal candidates, a
/// malformed keep pattern, a LinearSlot holding a null op or an op of another
/// shape (Model::check_linear_layers), an already-quantized layer (named), no quantizable
/// layer, or a target that cannot be met even with every layer at its smallest
/// option (naming the target and the largest reachable reduction) — all of
/// these before any layer is analysed (check_adaptive_options); then for a
/// planned layer whose op's dequantized_weight() is undefined, not a float
/// tensor or not [out_features, in_features] (named; BF16 / F16 ones are converted).
AdaptivePlan plan_adaptive_precision(Model& model, const AdaptiveOptions& options);

/// What plan_adaptive_precision checks before analysing any layer: the
/// options, and from the layers' shapes alone (fast: nothing is quantized)
/// that there is a layer to plan and that the target can be reached with
/// every planned layer at its smallest option. Throws the same
/// InvalidArgument plan_adaptive_precision would. Returns the largest
/// reachable reduction on this model (1 − Σ smallest bytes / bytes_before).
double check_adaptive_options(Model& model, const AdaptiveOptions& options);

/// check_adaptive_options, for a target the caller's user may not have chosen:
/// when `target_is_default` (AdaptiveOptions' default 0.80, neither a value
/// nor an adaptive-rP name gave it), the error of a target beyond the model's
/// reach (a BF16 / F16 checkpoint's: NF4 everywhere removes about 74 % of its
/// bytes) goes on to say that it is the default and what to give instead:
/// `target_option` (e.g. "--target-reduction"; empty: none) with the largest
/// reachable reduction, floored to 6 decimals, or less, or adaptive-rP with P
/// up to 100 times it. Returns, and throws otherwise, as check_adaptive_options.
double check_adaptive_reach(Model& model, const AdaptiveOptions& options, bool target_is_default,
                            const std::string& target_option);

/// The reduction no model whose layers are held in `held` (their on-disk
/// dtype: F32, BF16 or F16) can reach beyond with options.candidates (and
/// keeping, if allowed): 1 − the fewest bytes of a candidate per byte held on
/// a bias-free 2^20 x 2^20 layer (smaller layers, padding and biases only add
/// bytes). With the default candidates NF4's 0.87103 for F32, 0.74207 for
/// BF16 / F16 (the CLI prints them floored: 87.10 %, 74.20 %). With held =
/// F32 a bound for every model (a 16-bit checkpoint reaches less): the CLI
/// refuses a target above it as a usage error before loading the model;
/// check_adaptive_options then checks the model's own bound.
/// Throws InvalidArgument for invalid candidates (as check_adaptive_options)
/// or a `held` other than F32, BF16 and F16.
double adaptive_reduction_limit(const AdaptiveOptions& options, DType held = DType::F32);

/// plan_adaptive_precision, then quantize_model(model, plan.to_options()).
/// On a model from load_to_quantize (kq/optimizer.hpp: a BF16/F16 checkpoint
/// held in that dtype, each layer converted to FP32 only while it is analysed
/// or quantized) the plan, the report and the model are those of Model::load's.
/// The plan is stored in *plan_out when given. Same errors as both (the
/// Model::InUse one named "quantize_model_adaptive": the model is marked in use for the whole call). The
/// report's quantized_bytes_before / quantized_bytes_after cover every
/// planned layer, those the plan keeps unquantized included, and are
/// plan.bytes_before / plan.bytes_after: before counts every planned layer in
/// its on-disk dtype, as AdaptiveOptions::target_reduction does (so 1 − after
/// / before = plan.achieved_reduction >= the target; for a 16-bit checkpoint
/// this is not the sum of the layers' LayerQuantization::bytes_before, which
/// are the layers' FP32 bytes); quantized_matrix_bytes,
/// quantized_elements and bits_per_weight() cover the same planned layers (a
/// kept one counts 32 or 16 bits per weight), so the bits per weight agree
/// with the reduction; layers outside the plan (lm_head not quantized,
/// keep_patterns) are in none of them.
QuantizeReport quantize_model_adaptive(Model& model, const AdaptiveOptions& options,
                                       AdaptivePlan* plan_out = nullptr);

/// Whether `name` is an adaptive mode name for the CLI (`kq quantize --mode`,
/// `kq bench --modes`): it starts with "adaptive" (case-insensitive).
bool is_adaptive_mode(std::string_view name);

/// Parses an adaptive mode name: "adaptive" (target 0.80, entropy strategy),
/// "adaptive-rP" (target P % removed of the planned layers' bytes as held
/// unquantized, see AdaptiveOptions::target_reduction; P a decimal number in
/// (0, 100) with at most 4 decimals, e.g. adaptive-r85 or adaptive-r82.5),
/// optionally followed by "-entropy", "-error" or "-uniform" (the strategy);
/// default candidates (INT8 W8A8, NF4 b64 double quant, FP32).
/// Case-insensitive. Whether the target can be reached is not checked here
/// (adaptive_reduction_limit, check_adaptive_options). Throws InvalidArgument
/// naming the value (its first 40 characters and its length when longer) and
/// the accepted form and range.
AdaptiveOptions parse_adaptive_mode(std::string_view name);

/// Every spelling of an adaptive mode name that parse_adaptive_mode accepts
/// (case aside), for lists of valid modes: "adaptive", "adaptive-<strategy>"
/// for every AllocationStrategy (allocation_strategy_name), then the same
/// with "-rP" after "adaptive", where P stands for the per cent to remove
/// (e.g. adaptive-r85-error).
std::vector<std::string> valid_adaptive_mode_names();

/// Which settings an adaptive mode name states itself rather than leaving to
/// the defaults: "adaptive-r70" states the target, "adaptive-error" the
/// strategy, "adaptive" neither.
struct AdaptiveModeParts {
  bool target = false;    ///< an "-rP" part is given
  bool strategy = false;  ///< an "-entropy", "-error" or "-uniform" part is given
};

/// parse_adaptive_mode(name) that also reports, when `parts` is not null,
/// which settings the name gives (so that an option giving another value can
/// be refused as a conflict). Throws as parse_adaptive_mode.
AdaptiveOptions parse_adaptive_mode(std::string_view name, AdaptiveModeParts* parts);

/// The canonical name parse_adaptive_mode reads back: "adaptive-r80",
/// "adaptive-r82.5-error" (the strategy only when not entropy), P = 100 ·
/// target rounded to 4 decimals: exact for every parsed name and every target
/// that is a whole number of 0.000001. Another target is named as the nearest
/// such one, which the name then reads back as: 0.8000004 gives "adaptive-r80"
/// (0.8). Candidates other than the defaults are not part of the name. Throws
/// InvalidArgument for a target_reduction outside (0, 1) (as
/// AdaptiveOptions::target_reduction says) or a strategy outside AllocationStrategy.
std::string adaptive_mode_name(const AdaptiveOptions& options);

/// The chosen quantization with the fewest bits per weight (the plan's lowest
/// precision; it decides the specification's perplexity threshold, e.g. NF4's
/// 5 %), or std::nullopt when every layer is kept. Throws InvalidArgument naming the
/// layer when a layer's `chosen` is not an index into its candidates (a hand-edited plan).
std::optional<QuantSpec> lowest_precision_spec(const AdaptivePlan& plan);

/// The dtypes the plan's layers are held in unquantized (LayerAnalysis::held),
/// what its bytes_before and target refer to, for messages: "f32", "bf16" or
/// "f16", or several joined with '+' in the order first seen ("bf16+f32")
/// when the checkpoint mixes them; "" for a plan without layers.
std::string held_dtype_names(const AdaptivePlan& plan);

}  // namespace kq
