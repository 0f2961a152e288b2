#pragma once
// The main job (`kq bench`): for each quantization mode, quality (perplexity,
// KL divergence, top-1 agreement), weight memory and latency against the
// unquantized model, measured in the same run, with PASS/FAIL against the
// specification's perplexity thresholds.
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kq/adaptive.hpp"
#include "kq/context.hpp"
#include "kq/optimizer.hpp"

namespace kq {

class Model;

/// Latency of one model (the evaluation protocol: decode at batch 1 with a KV
/// cache after a prompt, after a warm-up, median of several runs). Each timed
/// run prefills the prompt, then decodes decode_tokens tokens greedily; the
/// headline figures are medians over the runs of each run's own figure (the
/// values decode_ms_per_token_runs / prefill_ms_runs hold, which the spreads
/// are of), not of the single tokens' times pooled over the runs.
struct LatencyResult {
  /// Median over the runs of each run's decode milliseconds per token (its
  /// whole decode time, each step's argmax and forward, / decode_tokens):
  /// the median of decode_ms_per_token_runs.
  double decode_ms_per_token = 0;
  double decode_tokens_per_s = 0;  ///< 1000 / decode_ms_per_token
  double prefill_ms = 0;           ///< median over the runs of each run's milliseconds to prefill the whole prompt
  double prefill_tokens_per_s = 0; ///< prompt_tokens / (prefill_ms / 1000)
  int64_t prompt_tokens = 0;
  int64_t decode_tokens = 0;       ///< tokens decoded per run
  int runs = 0;                    ///< timed runs (the warm-up not counted)
  /// Each timed run's decode milliseconds per token (the run's decode time /
  /// decode_tokens), in run order; `runs` values.
  std::vector<double> decode_ms_per_token_runs;
  /// relative_spread(decode_ms_per_token_runs): how much the runs disagree.
  double decode_spread = 0;
  /// Each timed run's prefill milliseconds (the whole prompt), in run order; `runs` values.
  std::vector<double> prefill_ms_runs;
  /// relative_spread(prefill_ms_runs): how much the runs' prefill times disagree.
  double prefill_spread = 0;
};

/// Run-to-run spread above which latency is called unstable: (max − min) /
/// median of the runs' decode ms/token > 20 %. Runs of the same decode on an
/// idle machine agree within a few per cent; a fifth means other work (or
/// frequency scaling) interfered, and a speedup computed from them is not to
/// be trusted.
inline constexpr double kUnstableLatencySpread = 0.20;

/// (max − min) / median of `run_values` (e.g. the runs' decode ms/token; any
/// unit, values > 0): 0 for fewer than two values or a median of 0; +inf when
/// a value is NaN, infinite or negative (so latency_is_unstable says so). The
/// median of an even count is the mean of the middle two.
double relative_spread(std::span<const double> run_values);

/// Whether repeated latency runs `run_values` disagree too much to be trusted:
/// relative_spread(run_values) > kUnstableLatencySpread. A pure function of
/// the values (tested as such).
bool latency_is_unstable(std::span<const double> run_values);

/// The LatencyResult of one model's timed runs: run i prefilled `prompt_tokens`
/// tokens in prefill_ms[i] milliseconds, then decoded `decode_tokens` tokens
/// in decode_ms[i] milliseconds (the whole decode). decode_ms_per_token is the
/// median over the runs of decode_ms[i] / decode_tokens, prefill_ms the median
/// of prefill_ms (the median of an even count is the mean of the middle two);
/// the per-run values and their spreads are filled in too. A pure function of
/// the values (measure_latency's statistic, tested as such). Throws
/// InvalidArgument for no runs, a different count of prefill and decode
/// times, a time that is NaN, infinite or negative, or non-positive token counts.
LatencyResult summarize_latency_runs(std::span<const double> prefill_ms, std::span<const double> decode_ms,
                                     int64_t prompt_tokens, int64_t decode_tokens);

/// How latency is measured.
struct LatencyOptions {
  int64_t prompt_tokens = 128;  ///< prefill length
  int64_t decode_tokens = 32;   ///< greedy tokens decoded after the prompt, per run
  int runs = 5;                 ///< timed runs (after one warm-up), the median of their figures taken
  /// Whether prompt_tokens / decode_tokens may be reduced when prompt + decode
  /// do not fit the model's context (values the user did not choose, i.e.
  /// defaults). false (the default): such a value is an InvalidArgument.
  bool fit_prompt_tokens = false;
  bool fit_decode_tokens = false;
};

/// `o` resolved against a context of `max_positions` tokens (the smallest of
/// the models measured): prompt_tokens + decode_tokens must be <= max_positions.
/// When they are not, the values marked fit_* are reduced (decode to leave at
/// least one prompt token, then the prompt to what is left) and each
/// reduction is reported with kq::warn() naming the field
/// (LatencyOptions::prompt_tokens / LatencyOptions::decode_tokens), the value
/// asked and the value used. Throws InvalidArgument naming the fields when the
/// values that may not be reduced do not fit, or for non-positive values.
LatencyOptions fit_latency_options(const LatencyOptions& o, int64_t max_positions);

/// Measures `models` (e.g. baseline and candidate) in the same run with runs
/// interleaved (A B A B ...), so machine noise hits both alike, after one
/// warm-up run of each; each model's result is summarize_latency_runs of its
/// timed runs (steady_clock around the prompt's forward and around the whole
/// greedy decode). `prompt` must
/// hold at least one token; it is repeated if shorter than prompt_tokens.
/// The options are resolved with fit_latency_options against the models'
/// smallest context first. Throws InvalidArgument for empty models/prompt, a
/// null model, a prompt token outside a model's [0, vocab_size) (naming
/// prompt[i] and models[j], before any run), non-positive options or options
/// that do not fit (see fit_latency_options), and when another thread's call
/// holds a model's mark (Model::InUse): each model is marked in use
/// ("measure_latency") for the whole call, so a call from another thread
/// that runs or changes one of them meanwhile throws InvalidArgument instead
/// of changing it between two runs. Timings depend on OpenMP's wait
/// policy, which the library leaves at OpenMP's default (spinning): on a
/// shared machine start the program with OMP_WAIT_POLICY=PASSIVE, as `kq`
/// does (ExecContext says why and how).
std::vector<LatencyResult> measure_latency(const std::vector<Model*>& models, std::span<const int32_t> prompt,
                                           const LatencyOptions& options);

/// Options of run_bench (the `kq bench` flags).
struct BenchOptions {
  /// The original (unquantized) Hugging Face model folder: each mode quantizes
  /// it and is compared with it. A KernelQuant quantized folder is refused
  /// (InvalidArgument naming a quantized layer: "bench needs the original model").
  std::filesystem::path model_dir;
  std::filesystem::path text;                 ///< UTF-8 evaluation text
  /// Encode added/special tokens such as "<|endoftext|>" in the text as their
  /// ids (EncodeOptions::allow_special); default false: the text is raw text.
  bool allow_special_tokens = false;
  /// parse_quant_mode / parse_adaptive_mode names. The default is the
  /// specification's four modes without "awq": an AWQ mode needs
  /// `calibration`, which has no default here. `kq bench` without --modes runs
  /// int8 int4 awq fp8, because the CLI supplies a calibration text
  /// (MODEL/demo-calibration.txt, else the shipped demo model's); add "awq"
  /// with a calibration file to do the same.
  std::vector<std::string> modes{"int8", "int4", "fp8"};
  int ctx = 0;                                ///< window length, 0 = the model's context
  /// First N windows, 0 = all; more than the text has evaluates all of them, with a warning
  /// (samples_beyond_text_warning, through kq::warn()).
  int samples = 0;
  bool quantize_lm_head = false;
  std::vector<std::string> keep_patterns;     ///< QuantizeOptions::keep_patterns
  /// UTF-8 calibration text for AWQ modes (QuantizeOptions::calibration); other
  /// modes ignore it. Empty with an AWQ mode is an InvalidArgument.
  std::filesystem::path calibration;
  LatencyOptions latency;                     ///< resolved with fit_latency_options before any work
  bool measure_latency = true;
  ExecContext context;  ///< a device or thread count out of range is named "BenchOptions::context.threads ..."
};

/// One mode's row of the benchmark table.
struct BenchResult {
  std::string mode;               ///< as given (e.g. "int4")
  std::string mode_canonical;     ///< QuantSpec::name() (e.g. "nf4"), or adaptive_mode_name() ("adaptive-r80")
  std::string family;             ///< "int8" / "int4" / "fp8" (adaptive: of the plan's lowest precision)
  /// Perplexity before / after (inf where it overflowed); ppl_delta_pct = (after / before - 1) · 100, computed as
  /// (exp(mean_nll_after - mean_nll_before) - 1) · 100, so it stays finite where a perplexity overflowed.
  double ppl_before = 0, ppl_after = 0, ppl_delta_pct = 0;
  /// Mean negative log-likelihood per scored token, nats, of the unquantized / quantized model
  /// (ppl = exp(mean NLL)); finite when a perplexity overflows to inf (a mean NLL above 709.78).
  double mean_nll_before = 0, mean_nll_after = 0;
  double threshold_pct = 0;       ///< the specification's max perplexity increase for the family
  bool pass = false;              ///< ppl_delta_pct < threshold_pct
  double kl_div = 0;              ///< mean KL(P_fp32 ‖ P_quant) over scored tokens, nats
  double top1_agreement = 0;      ///< fraction of scored tokens with the same argmax
  size_t weight_bytes_before = 0; ///< whole model, original on-disk dtype
  size_t weight_bytes_after = 0;  ///< whole model as held in memory after quantization
  /// The quantized linear layers unquantized in the checkpoint's original (on-disk) dtype, biases (F32)
  /// included: Σ N·K · dtype size + bias bytes (EVALUATION.md's "the unquantized model in its original dtype";
  /// 2 bytes per weight for a BF16 / F16 checkpoint, 4 for an F32 one), for every mode. For an adaptive mode
  /// every planned layer, those it keeps unquantized included: the bytes its target refers to. (Not
  /// QuantizeReport::quantized_bytes_before of a fixed mode, which counts the layers in FP32 as the loaded model
  /// held them: for a 16-bit checkpoint twice the matrices' bytes here.)
  size_t linear_bytes_before = 0;
  size_t linear_bytes_after = 0;  ///< the same layers quantized (1 − after / before: the reduction)
  /// The dtype(s) linear_bytes_before counts the layers' weights in, the checkpoint's: "f32", "bf16", "f16",
  /// or several joined with '+' in the order first seen ("bf16+f32") when the layers' dtypes differ (as
  /// held_dtype_names names an adaptive plan's).
  std::string linear_before_dtype = "f32";
  /// Adaptive mode: the linear layers BenchOptions::keep_patterns left out of the plan
  /// (AdaptivePlan::kept_layers / kept_bytes, unquantized in their on-disk dtype, biases
  /// included): not in linear_bytes_* nor in the target's budget. 0 for other modes.
  int linear_kept_layers = 0;
  size_t linear_kept_bytes = 0;
  double bits_per_weight = 0;     ///< 8 · bytes of the quantized matrices (biases excluded) / elements (real, unpadded)
  LatencyResult latency_before, latency_after;
  double speedup = 0;             ///< latency_before.decode_ms / latency_after.decode_ms
  double load_seconds = 0;        ///< load + quantize time of the quantized model
  double eval_seconds = 0;        ///< wall-clock seconds of the perplexity / KL pass over both models
  size_t rss_bytes = 0;           ///< resident memory with both models loaded
};

/// Whole-run results and header information.
struct BenchReport {
  std::string model, text, device;
  std::string calibration;  ///< BenchOptions::calibration when an AWQ mode ran, else empty
  std::string tokenizer;    ///< the files the tokenizer came from (Tokenizer::source())
  bool special_tokens = false;  ///< BenchOptions::allow_special_tokens
  std::string device_name;  ///< GPU name for device "cuda" (empty on the CPU)
  int ctx = 0;
  int64_t windows = 0, scored_tokens = 0, text_tokens = 0;
  int samples = 0;
  int threads = 0;
  double baseline_load_seconds = 0;  ///< wall-clock seconds to load the unquantized model
  size_t peak_rss_bytes = 0;
  std::vector<BenchResult> results;
};

/// The warning for a benchmarked mode whose latency runs (baseline or
/// quantized, latency_is_unstable) disagree too much: the runs' decode
/// ms/token (the speedup is then unreliable) or their prefill ms (the prefill
/// tokens/s then are), naming the mode and both spreads in per cent of each
/// measure that is unstable, the threshold and the advice; "" when all four
/// are stable or latency was not measured. A pure function of the result's
/// run values. The CLI hands it to kq::warn().
std::string latency_stability_warning(const BenchResult& result);

/// How much the baseline's latency, measured again beside each mode of one
/// bench run (measure_latency interleaves the baseline's runs with the mode's),
/// differs between the modes. Each speedup is against the baseline timed with
/// it, so a baseline that ran 2x slower beside one mode than beside another
/// means the modes were timed under different machine load, and their
/// speedups do not rank them.
struct BaselineLatencyDrift {
  size_t modes = 0;           ///< results with latency measured (both spreads are 0 for fewer than 2)
  /// relative_spread of those results' latency_before.decode_ms_per_token (the medians).
  double decode_spread = 0;
  /// relative_spread of their latency_before.prefill_ms (the medians; the same prompt for every mode).
  double prefill_spread = 0;
  /// Whether either spread is above kUnstableLatencySpread, the limit of one mode's runs.
  bool unstable() const { return decode_spread > kUnstableLatencySpread || prefill_spread > kUnstableLatencySpread; }
};

/// BaselineLatencyDrift of `results` (a BenchReport's): the results whose
/// latency_before.runs > 0 are compared, the others (latency not measured) skipped.
/// A pure function of the values (tested as such).
BaselineLatencyDrift baseline_latency_drift(std::span<const BenchResult> results);

/// The warning for a run whose baseline latency differs between its modes by
/// more than kUnstableLatencySpread (baseline_latency_drift): the decode
/// ms/token and prefill tokens/s ranges, naming the modes at both ends and the
/// spreads in per cent, and that the speedups of different modes are then not
/// comparable; "" when the drift is within the limit, or fewer than 2 modes
/// were timed. The CLI hands it to kq::warn().
std::string baseline_latency_drift_warning(std::span<const BenchResult> results);

/// One entry of `kq bench --modes`: a fixed quantization or an adaptive plan.
struct BenchMode {
  std::string name;       ///< as given
  std::string canonical;  ///< QuantSpec::name() or adaptive_mode_name()
  std::optional<QuantSpec> spec;            ///< a parse_quant_mode mode
  std::optional<AdaptiveOptions> adaptive;  ///< an adaptive mode (parse_adaptive_mode): the per-layer plan is
                                            ///< made on the model; its PASS threshold is that of the lowest
                                            ///< precision the plan uses (lowest_precision_spec)
};

/// The modes of `modes` (parse_quant_mode or parse_adaptive_mode names), in order.
/// Throws InvalidArgument for an empty list, an unknown name, or two names of
/// the same mode (e.g. "int4" and "nf4", "adaptive" and "adaptive-r80"), naming them.
std::vector<BenchMode> parse_bench_modes(const std::vector<std::string>& modes);

/// Fewest scored tokens for which `kq bench` gives its PASS/FAIL verdicts
/// without a warning: a perplexity over fewer moves by per cents from the
/// luck of the tokens alone (the demo text scores 1,648 with the demo model;
/// the test models' reference perplexities score the whole WikiText-2 test
/// set, 385,125 tokens for gpt2-tiny).
inline constexpr int64_t kMinScoredTokensForVerdict = 1000;

/// The warning for a report whose perplexities cover fewer than
/// kMinScoredTokensForVerdict tokens: the count and what to do about it; ""
/// otherwise. The CLI hands it to kq::warn().
std::string few_scored_tokens_warning(const BenchReport& report);

/// The warning for a BenchOptions::samples (`samples`) above the `windows`
/// the text has (all of them are evaluated): the windows' real lengths and
/// the value in effect, e.g. "BenchOptions::samples 2: the text (3 tokens)
/// has only 1 window, of 3 tokens (at most 256 per window); it was evaluated
/// (as with BenchOptions::samples 1)"; `windows` windows of at most `ctx`
/// tokens cover `text_tokens`. "" when samples <= windows. run_bench hands
/// it to kq::warn() itself (`kq eval` too, for its --samples).
std::string samples_beyond_text_warning(int samples, int64_t windows, int64_t text_tokens, int ctx);

/// Perplexity drop (per cent below the unquantized baseline's) beyond which a
/// mode's comparison is called implausible. Quantization adds noise to the
/// model it approximates: measured modes land 0.06 to 6 % above the baseline
/// (docs/PERFORMANCE.md of the source repository), and a few per cent below it on a short text by the
/// luck of the tokens; 5 %, the largest increase any PASS threshold allows
/// (INT4 < 5 %), is as far as chance goes the other way. A mode far better
/// than the model it copies means the baseline was wrong (seen: -99 % when
/// the baseline's activations were half computed, 27368a9).
inline constexpr double kImplausiblePplDropPct = 5.0;

/// Top-1 agreement below which a mode that PASSes is called implausible: a
/// perplexity within its threshold of the baseline's comes from much the same
/// predictions. Modes measured agree on 83 to 98 % of the scored tokens, the
/// INT4 ones at +4 to +6 % included (docs/PERFORMANCE.md of the source repository); under half means
/// the two models predict different tokens and the perplexities only happen
/// to be close (or the baseline's is wrong).
inline constexpr double kImplausibleTop1Agreement = 0.5;

/// The warning for a benchmarked mode whose comparison with the baseline
/// cannot be right: a perplexity more than kImplausiblePplDropPct below the
/// baseline's, or a PASS with a top-1 agreement below
/// kImplausibleTop1Agreement; it names the mode, the perplexities, the
/// agreement and the KL, and says the verdict tells nothing then. "" when
/// neither holds. PASS / FAIL stay those of the thresholds. The CLI hands it
/// to kq::warn() only when the run scored enough tokens for a verdict
/// (few_scored_tokens_warning is ""): over fewer, a perplexity moves by per
/// cents from the luck of the tokens, and the baseline is not to blame.
std::string implausible_comparison_warning(const BenchResult& result);

/// Progress events for a UI: a stage name and done/total counts.
using BenchProgressFn = std::function<void(const std::string& stage, int64_t done, int64_t total)>;

/// Called by run_bench as soon as a mode is done, with the report so far: its
/// results end with that mode's, and ctx, windows and scored_tokens are set
/// (peak_rss_bytes is set only in the report run_bench returns). A UI shows
/// each finished mode at once (`kq bench` prints its block), so that an
/// interrupted run or a later mode's error does not lose them. An exception
/// it throws ends run_bench there and reaches run_bench's caller unchanged:
/// the modes after it do not run.
using BenchResultFn = std::function<void(const BenchReport& so_far)>;

/// Runs the benchmark. Every mode is checked before the first one runs: its
/// name, and for an adaptive mode whether the model's layers can reach its
/// target (check_adaptive_options). Throws InvalidArgument (bad mode name, an
/// adaptive target beyond this model's reach, naming the mode; ctx, latency
/// options that do not fit the model's context; a text or calibration path
/// that is missing or not a regular file), FormatError (model files; a text
/// that is not valid UTF-8, naming the byte offset),
/// Unsupported (device); an adaptive mode whose plan quantizes no layer
/// (which a target in (0, 1) never gives) is an InvalidArgument naming the mode,
/// as is a mode whose every layer is kept (keep_patterns), after the modes
/// before it have run. Memory that runs out while the baseline (FP32) or a
/// mode's model is built is an OutOfMemory (kq/out_of_memory.hpp) saying which,
/// and what was being allocated where the loader knows it (a weight's F32 copy).
/// Messages name the BenchOptions fields they concern
/// ("BenchOptions::samples ...", "context length (BenchOptions::ctx) ...",
/// "BenchOptions::context.threads ..."). Non-fatal findings (e.g. a keep
/// pattern matching no layer, latency defaults reduced to fit, a
/// BenchOptions::samples above the windows the text has) go to kq::warn(). The latency
/// figures depend on OpenMP's wait policy: `kq bench` runs with
/// OMP_WAIT_POLICY=PASSIVE unless set, a library caller with OpenMP's default
/// unless it starts the program with it set (ExecContext says why and how).
BenchReport run_bench(const BenchOptions& options, const BenchProgressFn& progress = {},
                      const BenchResultFn& on_result = {});

/// Resident set size of this process now / at its peak, in bytes (Linux /proc).
size_t current_rss_bytes();
size_t peak_rss_bytes();

}  // namespace kq
