// `kq bench`: the main job — quality, memory and latency per quantization mode.
#include "kq/bench.hpp"

#include <fmt/core.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>

#include "commands.hpp"
#include "format_util.hpp"
#include "int_option.hpp"
#include "kq/context.hpp"
#include "io/atomic_file.hpp"
#include "io/json_strict.hpp"
#include "kq/error.hpp"
#include "kq/fp8.hpp"
#include "kq/info.hpp"
#include "kq/warning.hpp"
#include "demo_files.hpp"
#include "adaptive_option.hpp"
#include "mode_option.hpp"
#include "model_context.hpp"
#include "model_files.hpp"
#include "progress.hpp"
#include "keep_option.hpp"
#include "path_option.hpp"
#include "threads_option.hpp"

namespace kq::cli {
namespace {

namespace fs = std::filesystem;

struct BenchArgs {
  std::string model, text, json, device = "cpu", calibration;
  std::vector<std::string> modes;  ///< --modes as given (empty: default_modes)
  std::vector<std::string> keep;
  int ctx = 0, samples = 0, threads = 0, runs = 5, decode = 32, prompt = 128;
  bool lm_head = false, no_latency = false, special_tokens = false, quiet = false;
};

/// Whether the run scored enough tokens (kMinScoredTokensForVerdict) for its
/// PASS/FAIL against per-cent thresholds to mean something.
bool verdict_reliable(const BenchReport& r) { return r.scored_tokens >= kMinScoredTokensForVerdict; }

/// "PASS" / "FAIL", with a "?" when the verdict is not `reliable`.
std::string verdict(const BenchResult& m, bool reliable) {
  return std::string(m.pass ? "PASS" : "FAIL") + (reliable ? "" : "?");
}

/// The modes run without --modes: the specification's four, on either device.
std::vector<std::string> default_modes() { return {"int8", "int4", "awq", "fp8"}; }

/// The first lines of the run's header, to `out`: what runs (the model, the
/// device, the `modes` as given or the defaults, the text and the calibration
/// text of `o`), printed before the first progress bar so that the user knows
/// what a bar is for; print_header_rest adds what the run found out.
void print_header_start(std::FILE* out, const BenchOptions& o, const std::vector<std::string>& modes) {
  fmt::print(out, "KernelQuant bench\n");
  fmt::print(out, "  model   {}\n", o.model_dir.string());
  if (o.context.device == Device::CPU)
    fmt::print(out, "  device  cpu ({})\n", count_noun(resolve_threads(o.context.threads), "thread"));
  else
    fmt::print(out, "  device  {} ({}; baseline BF16 on the GPU)\n", device_name(o.context.device),
               get_fp8_info().device_name);
  fmt::print(out, "  modes   {}\n", fmt::join(modes, " "));
  fmt::print(out, "  text    {}{}\n", o.text.string(), o.allow_special_tokens ? ", special tokens recognized" : "");
  if (!o.calibration.empty()) fmt::print(out, "  calibration {} (AWQ)\n", o.calibration.string());
}

/// The rest of the run's header, to `out`, once the first mode is done: the
/// tokenizer and the text's tokens, the windows and the latency protocol of `r`.
void print_header_rest(std::FILE* out, const BenchReport& r) {
  fmt::print(out, "  text tokenized by {} ({})\n", r.tokenizer, count_noun(r.text_tokens, "token"));
  fmt::print(out, "  windows {} of ctx {} ({} scored tokens{})\n", r.windows, r.ctx, r.scored_tokens,
             r.samples ? fmt::format(", --samples {}", r.samples) : "");
  if (!r.results.empty() && r.results[0].latency_before.runs)
    fmt::print(out,
               "  latency decode at batch 1 with a KV cache after a {}-token prompt, {} per run; median over {} "
               "of each run's ms/token\n",
               r.results[0].latency_before.prompt_tokens,
               count_noun(r.results[0].latency_before.decode_tokens, "token"),
               count_noun(r.results[0].latency_before.runs, "run"));
}

/// Whether the latency of `m` was timed over 2 or more runs, so that their
/// run-to-run spread means something (with --runs 1 it is 0 by definition).
bool spread_measured(const BenchResult& m) { return m.latency_before.runs >= 2 && m.latency_after.runs >= 2; }

/// Whether the perplexity delta of `m` is a number (it is computed from the
/// mean NLLs, so a perplexity that overflowed to inf leaves it defined; NaN,
/// printed "n/a", only when no token was scored).
bool delta_defined(const BenchResult& m) { return std::isfinite(m.ppl_delta_pct); }

/// The warning for perplexities that overflowed to inf (the baseline's, a
/// mode's), naming them; "" when none did.
std::string ppl_overflow_warning(const BenchReport& r) {
  std::vector<std::string> whose;
  if (!r.results.empty() && std::isinf(r.results[0].ppl_before)) whose.push_back("the baseline");
  for (const BenchResult& m : r.results)
    if (std::isinf(m.ppl_after)) whose.push_back("mode " + m.mode);
  if (whose.empty()) return {};
  return perplexity_overflow_warning(whose, "; the delta is computed from the mean NLLs (exp(after - before) - 1)");
}

/// The mode as given, and what it resolved to when that is another name ("int4 (nf4)", "awq (awq-g128)", "int8").
std::string shown_mode(const BenchResult& m) {
  return m.mode_canonical.empty() || m.mode_canonical == m.mode ? m.mode
                                                                : fmt::format("{} ({})", m.mode, m.mode_canonical);
}

/// One mode's report, to `out`; `reliable`: false marks the verdict "PASS?" / "FAIL?".
void print_mode(std::FILE* out, const BenchResult& m, bool reliable) {
  fmt::print(out, "\n== {} ==\n", shown_mode(m));
  fmt::print(out, "  perplexity   {:.4f} -> {:.4f}  ({}, limit < {:.0f} %)  {}\n", m.ppl_before, m.ppl_after,
             delta_defined(m) ? fmt::format("{:+.2f} %", m.ppl_delta_pct) : std::string("n/a"), m.threshold_pct,
             verdict(m, reliable));
  // An overflowed perplexity (inf) is shown with the mean NLL it came from, which the delta is computed from.
  if (!std::isfinite(m.ppl_before) || !std::isfinite(m.ppl_after))
    fmt::print(out, "  mean NLL     {:.4f} -> {:.4f} nats/token\n", m.mean_nll_before, m.mean_nll_after);
  fmt::print(out, "  KL(fp32||q)  {:.5f} nats/token   top-1 agreement {:.2f} %\n", m.kl_div,
             m.top1_agreement * 100);
  fmt::print(out, "  weights      {} -> {}  ({:+.1f} %, whole model in memory vs on-disk dtype)\n",
             human_bytes(m.weight_bytes_before), human_bytes(m.weight_bytes_after),
             -reduction_pct(m.weight_bytes_before, m.weight_bytes_after));
  // Every mode against the layers in the checkpoint's on-disk dtype (BF16 for a BF16 checkpoint), as the whole-model
  // line: EVALUATION.md's "the unquantized model in its original dtype" (an adaptive target refers to the same).
  fmt::print(out, "  linear       {} -> {}  ({:.1f} % smaller vs {}, {:.3f} bits/weight)\n",
             human_bytes(m.linear_bytes_before), human_bytes(m.linear_bytes_after),
             reduction_pct(m.linear_bytes_before, m.linear_bytes_after), linear_basis_label(m.linear_before_dtype),
             m.bits_per_weight);
  if (m.linear_kept_layers > 0)  // an adaptive target is of the planned layers; these are not among them
    fmt::print(out,
               "  kept         {} linear layer{} by --keep ({}), not in the line above nor the target's budget; "
               "with them: {} -> {} ({:.1f} % smaller)\n",
               m.linear_kept_layers, m.linear_kept_layers == 1 ? "" : "s", human_bytes(m.linear_kept_bytes),
               human_bytes(m.linear_bytes_before + m.linear_kept_bytes),
               human_bytes(m.linear_bytes_after + m.linear_kept_bytes),
               reduction_pct(m.linear_bytes_before + m.linear_kept_bytes, m.linear_bytes_after + m.linear_kept_bytes));
  if (m.weight_bytes_after > m.linear_bytes_after)
    fmt::print(out,
               "  other        {}  (embeddings, unquantized layers: in their on-disk dtype; biases, norms: FP32)\n",
               human_bytes(m.weight_bytes_after - m.linear_bytes_after));
  if (m.latency_before.runs) {
    // One run has no spread to measure (--runs 1): "n/a", not "0 %".
    const std::string spread =
        spread_measured(m)
            ? fmt::format("run-to-run spread {:.0f} % -> {:.0f} %{}", m.latency_before.decode_spread * 100,
                          m.latency_after.decode_spread * 100, latency_stability_warning(m).empty() ? "" : ", UNSTABLE")
            : std::string("run-to-run spread n/a (1 run)");
    fmt::print(out, "  decode       {:.3f} -> {:.3f} ms/token  ({:.2f}x; {})\n", m.latency_before.decode_ms_per_token,
               m.latency_after.decode_ms_per_token, m.speedup, spread);
    fmt::print(out, "  prefill      {:.0f} -> {:.0f} tokens/s{}\n", m.latency_before.prefill_tokens_per_s,
               m.latency_after.prefill_tokens_per_s,
               spread_measured(m) ? fmt::format("  (run-to-run spread {:.0f} % -> {:.0f} %)",
                                                m.latency_before.prefill_spread * 100,
                                                m.latency_after.prefill_spread * 100)
                                  : std::string());
  }
  fmt::print(out, "  load+quantize {:.2f} s, eval {:.2f} s, resident {}\n", m.load_seconds, m.eval_seconds,
             human_bytes(m.rss_bytes));
}

/// One row of the summary table, as text cells (widths are computed from them).
std::vector<std::string> table_row(const BenchResult& m, bool reliable) {
  const bool timed = m.latency_before.runs > 0;
  return {shown_mode(m),
          fmt::format("{:.3f} -> {:.3f}", m.ppl_before, m.ppl_after),
          delta_defined(m) ? fmt::format("{:.2f}%", m.ppl_delta_pct) : std::string("n/a"),
          fmt::format("{:.5f}", m.kl_div),
          fmt::format("{:.1f}%", m.top1_agreement * 100),
          fmt::format("{} -> {} ({:+.0f}%)", human_bytes(m.weight_bytes_before),
                      human_bytes(m.weight_bytes_after),
                      -reduction_pct(m.weight_bytes_before, m.weight_bytes_after)),
          fmt::format("{:.3f}", m.bits_per_weight),
          timed ? fmt::format("{:.3f} -> {:.3f}", m.latency_before.decode_ms_per_token,
                              m.latency_after.decode_ms_per_token)
                : std::string("-"),
          timed ? fmt::format("{:.2f}x", m.speedup) : std::string("-"),
          verdict(m, reliable)};
}

/// The summary table, columns as wide as their widest cell (long mode names
/// such as "int4-g128-asym-bf16" or "awq (awq-g128)" do not shift the other columns).
std::string format_bench_table(const BenchReport& r) {
  const bool reliable = verdict_reliable(r);
  const std::vector<std::string> header{"mode",    "perplexity", "delta",           "KL",      "top-1",
                                        "weights", "bits",       "decode ms/token", "speedup", "result"};
  std::vector<std::vector<std::string>> rows{header};
  for (const BenchResult& m : r.results) rows.push_back(table_row(m, reliable));
  // The mode is left-aligned, numbers right-aligned, the result last and unpadded.
  return align_columns(rows, false);
}

/// The summary table and the peak memory, to `out`; then, when the verdicts
/// are unreliable (too few scored tokens), a line saying so.
void print_table(std::FILE* out, const BenchReport& r) {
  fmt::print(out, "\n{}", format_bench_table(r));
  fmt::print(out, "peak resident memory {}, baseline load {:.2f} s\n", human_bytes(r.peak_rss_bytes),
             r.baseline_load_seconds);
  if (!verdict_reliable(r))
    fmt::print(out,
               "result unreliable (PASS? / FAIL?): the perplexities cover only {}, fewer than {}; the exit "
               "status still follows PASS / FAIL\n",
               count_noun(r.scored_tokens, "scored token"), kMinScoredTokensForVerdict);
}

/// The --json document: the run's settings (`o` as run), then one object per mode.
nlohmann::json to_json(const BenchReport& r, const BenchOptions& o) {
  nlohmann::json j;
  j["kq_version"] = version();  // the kq that ran (kq --version), to tell results of different versions apart
  j["model"] = r.model;
  j["device"] = r.device;
  if (!r.device_name.empty()) j["device_name"] = r.device_name;
  j["text"] = r.text;
  if (!r.calibration.empty()) j["calibration"] = r.calibration;
  j["tokenizer"] = r.tokenizer;
  j["special_tokens"] = r.special_tokens;
  j["ctx"] = r.ctx;
  j["samples"] = r.samples;
  j["windows"] = r.windows;
  j["scored_tokens"] = r.scored_tokens;
  // false: fewer than kMinScoredTokensForVerdict scored tokens, the results' "pass" is not reliable
  j["reliable"] = verdict_reliable(r);
  j["threads"] = r.threads;
  j["quantize_lm_head"] = o.quantize_lm_head;  // --quantize-lm-head
  j["keep"] = o.keep_patterns;                  // --keep patterns, as given
  j["peak_rss_bytes"] = r.peak_rss_bytes;
  j["text_tokens"] = r.text_tokens;                      // the text's tokens, as in kq eval --json
  j["baseline_load_seconds"] = r.baseline_load_seconds;  // loading the unquantized model
  // The latency settings as run (defaults reduced to fit the context included); null with --no-latency.
  const LatencyResult* lat = !r.results.empty() && r.results[0].latency_before.runs ? &r.results[0].latency_before
                                                                                     : nullptr;
  j["latency_prompt_tokens"] = lat ? nlohmann::json(lat->prompt_tokens) : nlohmann::json(nullptr);
  j["latency_decode_tokens"] = lat ? nlohmann::json(lat->decode_tokens) : nlohmann::json(nullptr);
  j["latency_runs"] = lat ? nlohmann::json(lat->runs) : nlohmann::json(nullptr);
  // The baseline is timed again beside each mode: how much its medians differ between the modes ((max - min) /
  // median, per cent), and whether that is above the 20 % a mode's own runs may spread (the speedups of
  // different modes are then not comparable; a warning says so). null with --no-latency or one mode.
  const BaselineLatencyDrift drift = baseline_latency_drift(r.results);
  const auto drift_value = [&](nlohmann::json v) { return drift.modes >= 2 ? v : nlohmann::json(nullptr); };
  j["baseline_decode_spread_pct"] = drift_value(drift.decode_spread * 100);
  j["baseline_prefill_spread_pct"] = drift_value(drift.prefill_spread * 100);
  j["baseline_latency_unstable"] = drift_value(drift.unstable());
  j["results"] = nlohmann::json::array();
  for (const BenchResult& m : r.results) {
    nlohmann::json x;
    x["mode"] = m.mode;
    x["mode_canonical"] = m.mode_canonical;
    x["family"] = m.family;
    x["ppl_before"] = m.ppl_before;
    x["ppl_after"] = m.ppl_after;
    x["ppl_delta_pct"] = m.ppl_delta_pct;
    x["threshold_pct"] = m.threshold_pct;
    x["weight_bytes_before"] = m.weight_bytes_before;
    x["weight_bytes_after"] = m.weight_bytes_after;
    x["linear_bytes_before"] = m.linear_bytes_before;
    x["linear_bytes_after"] = m.linear_bytes_after;
    x["linear_before_dtype"] = m.linear_before_dtype;  // the on-disk dtype linear_bytes_before counts: "f32", "bf16"
    x["linear_kept_layers"] = m.linear_kept_layers;    // adaptive: layers --keep left out of the plan (else 0)
    x["linear_kept_bytes"] = m.linear_kept_bytes;      // their bytes unquantized, biases included
    x["bits_per_weight"] = m.bits_per_weight;
    const bool timed = m.latency_before.runs > 0;  // --no-latency: null, not 0
    auto num = [&](double v) { return timed ? nlohmann::json(v) : nlohmann::json(nullptr); };
    x["latency_ms_before"] = num(m.latency_before.decode_ms_per_token);
    x["latency_ms_after"] = num(m.latency_after.decode_ms_per_token);
    x["prefill_tokens_per_s_before"] = num(m.latency_before.prefill_tokens_per_s);
    x["prefill_tokens_per_s_after"] = num(m.latency_after.prefill_tokens_per_s);
    x["speedup"] = num(m.speedup);
    // (max - min) / median of the runs' decode ms/token, in per cent as printed (every per-cent value is a
    // *_pct key); > kUnstableLatencySpread is unstable. null with --no-latency, and with --runs 1 (one run has
    // no spread to measure).
    const bool spread = timed && spread_measured(m);
    auto pct = [&](double fraction) { return spread ? nlohmann::json(fraction * 100) : nlohmann::json(nullptr); };
    x["latency_spread_pct_before"] = pct(m.latency_before.decode_spread);
    x["latency_spread_pct_after"] = pct(m.latency_after.decode_spread);
    // The same of the runs' prefill ms (the prompt's, whole).
    x["prefill_spread_pct_before"] = pct(m.latency_before.prefill_spread);
    x["prefill_spread_pct_after"] = pct(m.latency_after.prefill_spread);
    // The mode's "unstable latency" warning: its decode or its prefill runs spread by more than 20 %.
    x["latency_unstable"] = spread ? nlohmann::json(!latency_stability_warning(m).empty()) : nlohmann::json(nullptr);
    x["kl_div"] = m.kl_div;
    x["top1_agreement_pct"] = m.top1_agreement * 100;  // per cent of the scored tokens, as printed
    x["load_seconds"] = m.load_seconds;
    x["rss_bytes"] = m.rss_bytes;
    x["pass"] = m.pass;
    // Mean NLL per scored token, nats (ppl = exp of it): finite where a perplexity overflowed (null above).
    x["mean_nll_before"] = m.mean_nll_before;
    x["mean_nll_after"] = m.mean_nll_after;
    x["eval_seconds"] = m.eval_seconds;  // the perplexity / KL pass over both models
    // "other" of the report: embeddings, unquantized layers, biases and norms, as held.
    x["other_bytes_after"] = m.weight_bytes_after > m.linear_bytes_after ? m.weight_bytes_after - m.linear_bytes_after
                                                                         : size_t(0);
    j["results"].push_back(std::move(x));
  }
  return j;
}

}  // namespace

void add_bench_command(CLI::App& app) {
  auto args = std::make_shared<BenchArgs>();
  auto* cmd = app.add_subcommand(
      "bench", "Quantize a model in each mode and report perplexity, KL, memory and latency vs FP32, with PASS/FAIL");
  cmd->add_option("--model,-m", args->model, "Model folder (default: the shipped demo model models/gpt2-tiny)")
      ->check(non_empty_path("folder"));
  CLI::Option* modes_opt =
      cmd->add_option("--modes", args->modes,
                      std::string("Quantization modes (int8 int4 nf4 fp4 fp4-bnb int4-g128 awq fp8 fp8-e5m2 "
                                  "int8-wo ...; default: the specification's int8 int4 awq fp8). ") +
                          cli::kInt4NamingHelp +
                          fmt::format(
                              " adaptive / adaptive-rP[-error|-uniform]: a precision per layer (int8, nf4 or "
                              "unquantized) removing P % (default 80; P in (0, 100), at most 4 decimals; at most "
                              "{:.2f} % can be reached, nf4 everywhere, {:.2f} % on a BF16 / F16 checkpoint, a little "
                              "less on a model with biases or small layers: an unreachable target's error gives the "
                              "model's own) of the linear layers' bytes in their on-disk dtype; its PASS threshold is "
                              "that of the lowest precision the plan uses (nf4: 5 %)",
                              reduction_limit_pct(AdaptiveOptions{}),
                              reduction_limit_pct(AdaptiveOptions{}, DType::BF16)))
          ->expected(1, -1)
          ->check(cli::quant_mode());
  cmd->add_option("--text,-t", args->text,
                  "UTF-8 evaluation text; invalid UTF-8 is an error naming the byte offset; standard input "
                  "is not read: '-' is an error (default: MODEL/demo-eval.txt, else the shipped "
                  "models/gpt2-tiny/demo-eval.txt)")
      ->check(input_text_path());
  cmd->add_option("--samples", args->samples, "Evaluate only the first N windows (0 = all)")
      ->transform(integer_in(0, 1 << 30))
      ->capture_default_str();
  cmd->add_option("--ctx", args->ctx, "Window length in tokens (0 = the model's context length)")
      ->transform(window_length())
      ->capture_default_str();
  cmd->add_option(
         "--device", args->device,
         "cpu, or cuda: the baseline is the model in BF16 on the GPU, quantized modes run the GPU kernels "
         "(docs/GPU.md)")
      ->check(CLI::IsMember({"cpu", "cuda", "gpu"}, CLI::ignore_case))
      ->capture_default_str();
  cmd->add_option("--calibration", args->calibration,
                  "UTF-8 calibration text for AWQ modes, not the --text they are scored on (default: "
                  "MODEL/demo-calibration.txt, else the shipped demo model's, found from where kq is installed or "
                  "built, not in the current folder); "
                  "other modes do not read it (given without an AWQ mode among --modes: a usage error)")
      ->check(input_text_path());
  add_threads_option(cmd, args->threads);
  cmd->add_option(
      "--json", args->json,
      "Also write the results as JSON to this file (atomically; missing folders above it are made). It must not be "
      "the --text or --calibration "
      "file or an existing file inside the --model folder (a new file there is fine). '-': the JSON goes to standard "
      "output and the human-readable report to standard error; /dev/null: nothing is written")
      ->check(non_empty_path("file"));
  cmd->add_flag("--quantize-lm-head", args->lm_head,
                "Quantize lm_head too (default: keep it in its original precision, FP32 or the 16-bit dtype of a "
                "BF16/F16 checkpoint)");
  add_keep_option(cmd, args->keep,
                  "Regex of layer names to keep in high precision, taken verbatim; one pattern per --keep: repeat "
                  "the option for more (--keep c_fc --keep c_attn); one that matches no layer is warned");
  CLI::Option* runs_opt = cmd->add_option("--runs", args->runs,
                                          "Timed latency runs, after a warm-up (reported: the median over them of "
                                          "each run's decode ms/token and prefill time)")
                              ->transform(integer_in(1, 1 << 30))
                              ->capture_default_str();
  CLI::Option* decode_opt = cmd->add_option("--decode-tokens", args->decode,
                                            "Tokens decoded per latency run (a default that does not fit the "
                                            "model's context is reduced, with a warning; "
                                            "a value given that does not fit is an error)")
                                ->transform(integer_in(1, 1 << 30))
                                ->capture_default_str();
  CLI::Option* prompt_opt = cmd->add_option("--prompt-tokens", args->prompt,
                                            "Prompt length for latency (a default that does not fit the "
                                            "model's context is reduced, with a warning; a "
                                            "value given that does not fit is an error)")
                                ->transform(integer_in(1, 1 << 30))
                                ->capture_default_str();
  // The latency options would be ignored with --no-latency: giving both is a usage error.
  cmd->add_flag("--no-latency", args->no_latency, "Skip the latency measurement")
      ->excludes(runs_opt)
      ->excludes(decode_opt)
      ->excludes(prompt_opt);
  cmd->add_flag(
      "--special-tokens", args->special_tokens,
      "Also recognize special added tokens such as <|endoftext|> in the text and score their ids (as Hugging "
      "Face tokenizers do); default: they are text (added tokens that are not special are always recognized)");
  cmd->add_flag("--quiet", args->quiet, "No progress bar");
  cmd->callback([args, decode_opt, prompt_opt, modes_opt] {
    BenchOptions o;
    bool demo_text_for_another_model = false;
    o.model_dir = args->model.empty() ? default_model_dir() : fs::path(args->model);
    if (!args->text.empty()) {
      o.text = args->text;
    } else if (std::error_code ec; fs::exists(o.model_dir / "demo-eval.txt", ec)) {  // (a loop: no, not a throw)
      o.text = o.model_dir / "demo-eval.txt";
    } else {
      o.text = default_model_dir() / "demo-eval.txt";  // the shipped demo text (plain English)
      demo_text_for_another_model = true;
    }
    check_input_file(input_name("--text", !args->text.empty(), "text").c_str(), o.text.string());
    o.allow_special_tokens = args->special_tokens;
    o.modes = modes_opt->count() > 0 ? args->modes : default_modes();
    bool awq = false;
    try {  // two names of one mode: a usage error (exit 2), like an unknown name
      for (const BenchMode& m : parse_bench_modes(o.modes)) awq = awq || (m.spec && m.spec->awq);
    } catch (const InvalidArgument& e) {
      throw CLI::ValidationError(e.what());
    }
    if (awq) {
      o.calibration = calibration_text(args->calibration, o.model_dir);
      check_input_file(input_name("--calibration", !args->calibration.empty(), "calibration text").c_str(),
                       o.calibration.string());
    } else if (!args->calibration.empty()) {  // an option no mode uses is a usage error, as in kq quantize
      throw CLI::ValidationError(fmt::format(
          "--calibration goes with the AWQ modes (awq, awq-g64, awq-sym, ...); --modes has none ({})",
          fmt::join(o.modes, " ")));
    }
    o.ctx = args->ctx;
    o.samples = args->samples;
    o.quantize_lm_head = args->lm_head;
    o.keep_patterns = args->keep;
    o.latency.runs = args->runs;
    o.latency.decode_tokens = args->decode;
    o.latency.prompt_tokens = args->prompt;
    o.latency.fit_decode_tokens = decode_opt->count() == 0;  // only defaults may shrink to fit the context
    o.latency.fit_prompt_tokens = prompt_opt->count() == 0;
    o.measure_latency = !args->no_latency;
    o.context.device = parse_device(args->device);
    check_json_output(args->json, o.text.string(), o.model_dir, o.calibration.string());
    if (o.ctx == 0) {
      check_context_evaluable(o.model_dir, "perplexity windows");
      if (const std::string w = long_default_window_warning(o.model_dir, o.context.device); !w.empty()) warn(w);
    }
    o.context.threads = args->threads;
    // A short text judges another model's modes by luck as much as by quantization (tester27 F8: llama-small
    // int4 +6.49 % FAIL on it, +4.27 % PASS on WikiText-2 test): said once, after the options were checked.
    if (demo_text_for_another_model)
      warn(fmt::format("no --text: {} is scored on the shipped demo text {} (a few thousand tokens, enough to "
                       "try kq; a perplexity change moves by a point or more between such texts): for the "
                       "specification's PASS / FAIL, give a full evaluation text, e.g. --text "
                       "wikitext-2-test.txt",
                       o.model_dir.string(), o.text.string()));

    std::unique_ptr<Progress> bar;  // one bar per stage ("[1/3] int8 perplexity", ...)
    std::string stage_now;
    // --json -: standard output carries the JSON alone, the report goes to standard error.
    const bool json_stdout = args->json == "-";
    std::FILE* out = json_stdout ? stderr : stdout;
    // The header and each mode's block are printed (and flushed: stdout may be a
    // file or a pipe) as soon as the mode is done, so that an interrupted run or
    // a later mode's error keeps the finished ones. A report that cannot be
    // written (print_report) ends the run there, unless --json asks for the
    // results: the run then goes on, unreported, to write them.
    size_t printed = 0;
    const auto report = [&](auto&& print) {
      if (!print_report(out, print) && args->json.empty()) throw_report_error(out);
    };
    auto unchanged = [&] {
      check_model_files_unchanged(printed == 0 ? "the results are not reported"
                                               : "the modes reported above ran before it; the rest are not reported");
    };
    bool header_started = false;
    const auto start_header = [&] {
      if (header_started) return;
      header_started = true;
      report([&] { print_header_start(out, o, o.modes); });
    };
    BenchReport r;
    try {
      r = run_bench(
          o,
          [&](const std::string& stage, int64_t done, int64_t total) {
            start_header();  // before the first bar: what runs
            if (!bar || stage != stage_now) {
              if (bar) bar->finish();
              bar = std::make_unique<Progress>(stage, !args->quiet);
              stage_now = stage;
            }
            bar->update(done, total);
          },
          [&](const BenchReport& so_far) {
            if (bar) bar->finish();
            unchanged();
            start_header();
            report([&] {
              if (printed == 0) print_header_rest(out, so_far);
              print_mode(out, so_far.results.back(), verdict_reliable(so_far));
            });
            ++printed;
          });
    } catch (const Error&) {
      // Each mode loads the model again: a file truncated or replaced during
      // the run fails that load as "corrupt", and one rewritten in place can
      // give non-finite logits; say what happened instead.
      bar.reset();
      unchanged();
      throw;
    }
    bar.reset();
    unchanged();
    report([&] { print_table(out, r); });  // the warnings (stderr) come after the table, where the speedups are read
    for (const BenchResult& m : r.results)
      if (const std::string w = latency_stability_warning(m); !w.empty()) warn(w);
    if (const std::string w = baseline_latency_drift_warning(r.results); !w.empty()) warn(w);
    // Over too few scored tokens (the verdicts read PASS? / FAIL?, and a warning says why) a perplexity moves by
    // per cents from the luck of the tokens: a mode below the baseline then says nothing about the baseline.
    if (verdict_reliable(r))
      for (const BenchResult& m : r.results)
        if (const std::string w = implausible_comparison_warning(m); !w.empty()) warn(w);
    if (const std::string w = few_scored_tokens_warning(r); !w.empty()) warn(w);
    if (const std::string w = ppl_overflow_warning(r); !w.empty()) warn(w);
    if (json_stdout) {
      fmt::print("{}\n", io::json_text(to_json(r, o), 2));
      flush_stdout();
    } else if (!args->json.empty() && write_json_file(args->json, io::json_text(to_json(r, o), 2) + "\n")) {
      print_report(stdout, [&] { fmt::print("wrote {}\n", args->json); });
    }
    bool all_pass = true;
    for (const BenchResult& m : r.results) all_pass = all_pass && m.pass;
    if (!all_pass) throw CLI::RuntimeError(3);
  });
}

}  // namespace kq::cli
