// `kq quantize`: write a quantized model folder.
#include <fmt/core.h>
#include <fmt/format.h>

#include <nlohmann/json.hpp>

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>
#include <memory>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "adaptive_option.hpp"
#include "api/awq.hpp"
#include "commands.hpp"
#include "core/out_of_memory.hpp"
#include "demo_files.hpp"
#include "format_util.hpp"
#include "int_option.hpp"
#include "io/atomic_dir.hpp"
#include "io/json_strict.hpp"
#include "io/output_folders.hpp"
#include "kq/awq_export.hpp"
#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/error.hpp"
#include "kq/gptq_export.hpp"
#include "kq/optimizer.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "mode_option.hpp"
#include "model_context.hpp"
#include "model_files.hpp"
#include "real_option.hpp"
#include "keep_option.hpp"
#include "path_option.hpp"
#include "threads_option.hpp"

namespace kq::cli {
namespace {

/// Deletes the `<out>.tmp-XXXXXX` / `<out>.old-XXXXXX` folders left next to
/// --out by a kq quantize that died without removing them (kill -9, a crash,
/// power loss): those no process holds the lock of
/// (io::remove_stale_staging_leftovers), one line each naming it. Warns about
/// the others, kept: one being written by a running kq quantize (or that
/// cannot be checked: a file system without flock), and an `<out>.old-XXXXXX`
/// that may be the only copy of the folder an interrupted --overwrite was
/// replacing (with the command that restores it).
void clean_staging_leftovers(const std::string& out) {
  const io::StagingCleanup left = io::remove_stale_staging_leftovers(out);
  for (const auto& p : left.removed)
    warn(fmt::format("--out '{}': removed '{}', left by a kq quantize that was killed before removing it", out,
                     p.string()));
  for (const auto& p : left.kept_old)
    warn(fmt::format("--out '{}': kept '{}': it may hold '{}' as it was before a kq quantize --overwrite that was "
                     "killed while replacing it, then its only copy (to restore it: stop this run, then mv '{}' '{}'); "
                     "kq never deletes it: remove it yourself when it is not needed",
                     out, p.string(), out, p.string(), out));
  for (const auto& p : left.not_made_by_kq)
    warn(fmt::format("--out '{}': '{}' is named like a kq quantize staging folder but kq cannot tell it made it "
                     "(no {} marker, or an .old- folder next to a complete '{}'): not deleted",
                     out, p.string(), io::kStagingMarker, out));
  const std::vector<std::filesystem::path>& kept = left.in_use_or_unknown;
  if (kept.empty()) return;
  std::string names;
  for (const auto& p : kept) names.append(names.empty() ? "'" : ", '").append(p.string()).append("'");
  warn(fmt::format(
      "--out '{}': {} unfinished output folder{} of a kq quantize that is still running (or that could not be "
      "checked) next to it: {} (not deleted; remove {} if no kq quantize is writing '{}')",
      out, kept.size(), kept.size() == 1 ? "" : "s", names, kept.size() == 1 ? "it" : "them", out));
}

/// The folder --out writes, resolved through symbolic links, "." and ".."
/// (io::AtomicDir::resolve_target: a link to a folder is followed, a link to
/// a file or to nothing is refused, naming --out); empty when it cannot be
/// resolved (left to the checks that write it).
std::filesystem::path resolved_out(const std::string& out) {
  namespace fs = std::filesystem;
  fs::path target;
  try {
    target = io::AtomicDir::resolve_target(out);
  } catch (const InvalidArgument& e) {
    raise<InvalidArgument>("--out {}", e.what());
  }
  std::error_code ec;
  const fs::path dst = fs::weakly_canonical(fs::absolute(target, ec), ec);
  return ec ? fs::path{} : dst;
}

/// Whether the canonical path `p` is the folder `dir` or inside it.
bool is_within(const std::filesystem::path& p, const std::filesystem::path& dir) {
  return std::mismatch(dir.begin(), dir.end(), p.begin(), p.end()).first == dir.end();
}

/// --out against --model, before the library's checks (check_quantized_output):
/// the output folder must be neither the input folder nor inside it
/// (resolved_out). Throws InvalidArgument naming the option and both folders.
void check_out_against_model(const std::string& out, const std::string& model) {
  namespace fs = std::filesystem;
  if (out.empty()) return;  // check_quantized_output names it
  const fs::path dst = resolved_out(out);
  std::error_code ec;
  const fs::path src = fs::canonical(model, ec);
  if (ec || !fs::is_directory(src, ec) || dst.empty()) return;  // the model load names a missing --model
  if (dst == src)
    raise<InvalidArgument>("--out '{}' is the --model folder '{}': the output folder must not be the input folder",
                           out, model);
  if (is_within(dst, src))
    raise<InvalidArgument>(
        "--out '{}' is inside the --model folder '{}': the output folder must not be inside the input folder "
        "(nor be it); choose a folder outside it",
        out, model);
}

/// The folder --out goes in: the parent of resolved_out(out) (absolute); empty when it cannot be resolved.
std::filesystem::path out_parent(const std::string& out) {
  const std::filesystem::path dst = resolved_out(out);
  return dst.empty() ? dst : dst.parent_path();
}

/// The library's checks of --out before the slow part (check_quantized_output, which wants the folder --out
/// goes in to exist), or, when folders above --out are missing (kq quantize makes them as it writes the folder:
/// make_out_parents), the checks that apply then: no part of the path is a file or a dangling link (named:
/// "'notes.txt' is not a directory") and the nearest existing folder is writable. Nothing is created here.
/// Throws InvalidArgument naming --out.
void check_out_folder(const std::string& out, const std::string& model, bool overwrite) {
  const std::filesystem::path parent = out_parent(out);
  if (parent.empty()) return check_quantized_output(out, model, overwrite);  // which names what is wrong
  if (const auto why = io::why_not_creatable_folder(parent))
    raise<InvalidArgument>("--out '{}': cannot create it: {}", out, *why);
  const std::filesystem::path top = io::nearest_existing_folder(parent);
  if (top == parent) return check_quantized_output(out, model, overwrite);
  if (::access(top.c_str(), W_OK | X_OK) != 0) {
    const int err = errno;
    raise<InvalidArgument>("--out '{}': cannot create it: folder '{}' is missing and cannot be made in '{}' ({})", out,
                           parent.string(), top.string(), std::strerror(err));
  }
}

/// Makes the missing folders above --out (mkdir -p), just before the folder is written; they are removed again,
/// each while empty, unless keep() is called once it is in place (and on an interrupt: io::MadeFolders). Errors
/// name --out.
std::unique_ptr<io::MadeFolders> make_out_parents(const std::string& out) {
  const std::filesystem::path parent = out_parent(out);
  if (parent.empty()) return nullptr;
  try {
    return std::make_unique<io::MadeFolders>(parent);
  } catch (const Error& e) {
    raise<Error>("--out '{}': cannot create it: {}", out, e.what());
  }
}

/// --out against an input file that is not in the model folder (the AWQ
/// --calibration text): it must be neither the output folder itself nor
/// inside it, which --overwrite would replace (the file was deleted, exit 0).
/// Throws InvalidArgument naming both options and paths.
void check_out_against_input(const std::string& out, const char* in_option, const std::filesystem::path& in) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const fs::path src = fs::canonical(in, ec);
  if (ec) return;  // a missing input is named where it is read
  const fs::path dst = resolved_out(out);
  if (!dst.empty() && is_within(src, dst))
    raise<InvalidArgument>(
        "--out '{}' would replace the {} file '{}'{}; choose another output folder", out, in_option, in.string(),
        dst == src ? "" : " (it is inside that folder)");
}

/// --model must be an original model, not a folder kq quantize wrote (its
/// config.json has a kq quantization_config) nor a pre-quantized AutoAWQ /
/// AutoGPTQ / bitsandbytes checkpoint: requantizing one, or re-saving
/// it with every layer kept, would pass for a quantization. Throws
/// InvalidArgument naming the folder and its mode; a config.json that cannot
/// be read is left to the model load, which names the problem.
void check_model_not_quantized(const std::string& model) {
  io::check_not_staging_folder(model);  // first: a staging folder's config.json is a kq quantized one
  nlohmann::json cfg;
  try {
    cfg = io::load_hf_json_file(std::filesystem::path(model) / "config.json");  // as the model load reads it
  } catch (const Error&) {
    return;
  }
  if (!cfg.is_object() || !cfg.contains("quantization_config") || !cfg["quantization_config"].is_object()) return;
  const nlohmann::json& qc = cfg["quantization_config"];
  if (!qc.contains("quant_method") || !qc["quant_method"].is_string()) return;
  const std::string method = qc["quant_method"].get<std::string>();
  if (method == "awq" || method == "gptq" || method == "bitsandbytes")  // tester round 21, finding 6
    raise<InvalidArgument>(
        "--model '{}' is already quantized (a pre-quantized checkpoint: config.json quantization_config.quant_method "
        "\"{}\"); kq eval and kq generate run it as it is; to quantize, give the original, unquantized model folder",
        model, method);
  if (method != "kq") return;
  const std::string mode = qc.contains("mode") && qc["mode"].is_string() ? qc["mode"].get<std::string>() : "?";
  raise<InvalidArgument>(
      "--model '{}' is already quantized (a folder written by kq quantize, mode {}); quantize the original model "
      "folder instead",
      model, mode);
}

/// The calibration tokens of AWQ from the text file `calib` (the --calibration
/// option's value or its default; `name` names it in messages, input_name): an
/// empty or whitespace-only file, or one of a single token, is an error naming
/// it (awq::read_calibration_tokens); a text shorter than one
/// calibration window of the model (or than 128 tokens) is warned about, naming
/// it and its token count, and used.
std::vector<int32_t> calibration_tokens(const std::filesystem::path& calib, const std::string& name,
                                        const std::string& model_dir, const CalibrationOptions& options) {
  check_input_file(name.c_str(), calib.string());
  // One window of the calibration forward pass (awq::collect_activation_stats).
  int64_t window = options.window > 0 ? options.window : 512;
  if (options.window <= 0) {
    try {
      window = std::min<int64_t>(512, load_model_config(model_dir).max_positions);
    } catch (const Error&) {
      // the model load below names what is wrong with the folder
    }
  }
  return awq::read_calibration_tokens(calib, Tokenizer::load(model_dir), window, name);
}

/// --model as the library names it once the model is loaded (Model::source_dir(): absolute, weakly canonical),
/// for the reads of its files that kq quantize makes before (check_side_files, the AWQ calibration's
/// tokenizer): a warning about one of them (tokenizer_config.json's add_bos_token, ...) is then the very message
/// that save_quantized_model's own check repeats, which main() prints once; with the path as given (a relative
/// --model) it was printed twice, once per spelling. The path as given when it cannot be made absolute.
std::string as_source_dir(const std::string& model) {
  namespace fs = std::filesystem;
  std::error_code ec;
  fs::path source = fs::weakly_canonical(model, ec);
  if (ec) source = fs::absolute(model, ec).lexically_normal();
  return ec ? model : source.string();
}

/// check_quantized_side_files on --model with the vocabulary size of its
/// config.json, before the model is loaded: a tokenizer or generation file the
/// quantized folder's loaders would refuse fails the command before any work.
/// A config.json that cannot be read is left to the model load, which names it.
void check_side_files(const std::string& model_dir) {
  int64_t vocab_size = 0;
  try {
    vocab_size = load_model_config(model_dir).vocab_size;
  } catch (const Error&) {
    return;
  }
  check_quantized_side_files(model_dir, vocab_size);
}

/// --format gptq / awq: the checks of check_gptq_options and check_gptq_model_config (check_awq_options and
/// check_awq_model_config) on the config.json of --model, read as the model load reads it (one that cannot be read
/// is left to the load), before anything is loaded, their messages naming the option ("--format gptq: mode nf4
/// cannot be written as GPTQ ..."). --format awq: returns the layers whose AWQ s is fixed at 1
/// (awq_unit_scale_layers: o_proj of a grouped-query model) for QuantizeOptions::awq_unit_scale_layers.
std::vector<std::string> check_hub_format(const std::string& format, const std::string& mode, bool adaptive,
                                          const QuantizeOptions& qo, const std::string& model) {
  const bool awq = format == "awq";
  const char* name = awq ? "AutoAWQ" : "GPTQ";
  const std::string modes = awq ? "--mode awq, awq-gB or awq-gB-sym (B = 32..256)"
                                : "--mode int4-gB or int4-gB-asym (B = 32..256, e.g. int4-g128)";
  if (adaptive)
    raise<InvalidArgument>("--format {}: --mode {} (a precision per layer) cannot be written as {}, which has one "
                           "{} 4-bit format for all quantized layers; use {}, or --format kq",
                           format, mode, name, awq ? "AWQ" : "integer", modes);
  const auto as_option = [&](const InvalidArgument& e) {
    const std::string prefix = std::string(name) + " format: ";
    std::string msg = e.what();
    if (msg.starts_with(prefix)) msg = msg.substr(prefix.size());
    for (const auto& [api, option] :
         {std::pair<std::string, std::string>{"use the kq format", "use --format kq"},
          {"or the kq format", "or --format kq"},
          {"use an int4-gB or int4-gB-asym mode", "use --mode int4-gB or int4-gB-asym"},
          {"use an AWQ mode (awq, awq-gB, awq-gB-sym)", "use --mode awq, awq-gB or awq-gB-sym"}})
      if (const size_t at = msg.find(api); at != std::string::npos) msg.replace(at, api.size(), option);
    raise<InvalidArgument>("--format {}: {}", format, msg);
  };
  try {
    if (awq)
      check_awq_options(qo);
    else
      check_gptq_options(qo);
  } catch (const InvalidArgument& e) {
    as_option(e);
  }
  ModelConfig config;
  try {
    config = load_model_config(model);
  } catch (const Error&) {
    return {};  // the model load names what is wrong with the folder
  }
  try {
    if (awq)
      check_awq_model_config(config, model, qo.spec.block_size);
    else
      check_gptq_model_config(config, model);
  } catch (const InvalidArgument& e) {
    as_option(e);
  }
  return awq ? awq_unit_scale_layers(config) : std::vector<std::string>();
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  struct Args {
    std::string model, mode, out, calibration;
    std::string format = "kq";  // --format
    std::vector<std::string> keep;
    bool lm_head = false, overwrite = false;
    double target = 0.8;  // --target-reduction (adaptive modes)
    std::string strategy;  // --strategy (adaptive modes)
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("quantize", "Quantize a Hugging Face model folder and write a KernelQuant folder (or, with --format gptq / awq, an AutoGPTQ / AutoAWQ checkpoint)");
  cmd->add_option("--model,-m", a->model, "Source model folder (config.json + safetensors + tokenizer)")
      ->required()
      ->check(non_empty_path("folder"));
  cmd->add_option("--mode", a->mode,
                  std::string("Quantization mode: int8 int4 nf4 fp4 fp4-bnb int4-g128 awq fp8 fp8-e5m2 int8-wo ...; "
                              "awq = awq-g128 (zero points), awq-gN (N = 32, 64, 128, 256), awq-sym, awq-bf16; "
                              "adaptive: a precision per layer (see --target-reduction), also adaptive-rP "
                              "(P = per cent to remove) and the strategy suffixes -entropy (default), -error, "
                              "-uniform (adaptive-r80-error = --strategy error). ") +
                      cli::kInt4NamingHelp +
                      " Otherwise a 4-bit block size may be written -bN or -gN (awq-b64 = awq-g64, nf4-g64 = "
                      "nf4-b64), and a modifier that restates the default is accepted (awq-g128-asym = awq); the "
                      "output names the mode canonically")
      ->required()
      ->check(cli::quant_mode());
  CLI::Option* target_opt =
      cmd->add_option("--target-reduction", a->target,
                      "--mode adaptive: fraction of the linear layers' weight bytes to remove, counted as the "
                      "model holds them unquantized (its on-disk dtype: f32, or bf16 / f16 for a 16-bit checkpoint, "
                      "where nf4 everywhere removes about 74 %); each layer gets int8, nf4 or stays unquantized so "
                      "that this is reached at the least estimated loss (default 0.8, or P/100 of adaptive-rP); in "
                      "[0.000001, 0.999999], at most 6 decimals. Layers kept by --keep are not planned and not in "
                      "this budget: the fraction is then of the other layers (the plan prints both figures)")
          ->check(target_reduction_value());
  CLI::Option* strategy_opt =
      cmd->add_option("--strategy", a->strategy,
                      "--mode adaptive: layer sensitivity: entropy (weight entropy x measured error; default), "
                      "error (measured error alone), uniform (one format for all)")
          ->check(CLI::IsMember({"entropy", "error", "uniform"}, CLI::ignore_case));
  cmd->add_option("--out,-o", a->out,
                  "Output folder (written atomically; missing folders above it are made, as mkdir -p does, and "
                  "removed again if the write fails)")
      ->required()
      ->check(non_empty_path("folder"));
  cmd->add_flag("--quantize-lm-head", a->lm_head,
                "Quantize lm_head too (default: keep it in its original precision, FP32 or the 16-bit dtype of a "
                "BF16/F16 checkpoint)");
  add_keep_option(cmd, a->keep,
                  "Regex of layer names to keep in high precision, taken verbatim; one pattern per --keep: repeat "
                  "the option for more (--keep c_fc --keep c_attn); one that matches no layer is warned");
  CLI::Option* calibration_opt =
      cmd->add_option("--calibration", a->calibration,
                      "AWQ modes only: UTF-8 calibration text, not text you will report quality on (default: "
                      "MODEL/demo-calibration.txt, else the shipped demo model's demo-calibration.txt, found from "
                      "where kq is installed or built, not in the current folder)")
          ->check(input_text_path());
  cmd->add_flag("--overwrite", a->overwrite,
                "Replace OUT if it exists and is not empty (atomically; an empty folder is written like a new one, "
                "with or without --overwrite); only a folder kq quantize wrote: a non-empty one without config.json, "
                "one whose config.json has no kq quantization_config, or one holding files kq quantize does not "
                "write is refused");
  cmd->add_option("--format", a->format,
                  "Output folder format: kq (default: KernelQuant's own folder, every mode) or gptq (an AutoGPTQ "
                  "checkpoint, GPTQ v1, that vLLM, transformers with GPTQModel / optimum, TGI and exllama load: "
                  "--mode int4-gB or int4-gB-asym only (round to nearest, B = 32..256), without --keep or "
                  "--quantize-lm-head, GPT-2 and Llama-family models; its scales are FP16, kq's F32 ones rounded, "
                  "and the unquantized tensors FP16) or awq (an AutoAWQ GEMM checkpoint that vLLM and transformers "
                  "load: --mode awq, awq-gB or awq-gB-sym only, without --keep or --quantize-lm-head, Llama-family "
                  "models whose layer widths are multiples of B; AWQ's s folded into the norms, up_proj and v_proj; "
                  "a grouped-query model's o_proj is quantized with s = 1, as AutoAWQ does; FP16 as gptq)")
      ->capture_default_str()
      ->check(CLI::IsMember({"kq", "gptq", "awq"}, CLI::ignore_case));
  add_threads_option(cmd, a->threads);
  cmd->callback([a, target_opt, strategy_opt, calibration_opt] {
    const bool adaptive = is_adaptive_mode(a->mode);
    if (!adaptive && (target_opt->count() > 0 || strategy_opt->count() > 0))
      throw CLI::ValidationError("--target-reduction and --strategy go with --mode adaptive (or adaptive-rP), not " +
                                 a->mode);
    // An option the mode does not use is a usage error, not silently ignored.
    if (calibration_opt->count() > 0 && (adaptive || !parse_quant_mode(a->mode).awq))
      throw CLI::ValidationError("--calibration goes with the AWQ modes (awq, awq-g64, awq-sym, ...), not " +
                                 a->mode);
    // Ctrl-C, SIGTERM or SIGHUP while the folder is written removes the
    // staging folder (<out>.tmp-XXXXXX) before the signal ends the process.
    // Before any other thread starts: the signals are blocked in this thread
    // and so in the OpenMP/oneDNN workers it starts, which they must never interrupt.
    io::remove_staging_dirs_on_signals();
    QuantizeOptions qo;
    if (!adaptive) qo.spec = parse_quant_mode(a->mode);
    qo.quantize_lm_head = a->lm_head;
    qo.keep_patterns = a->keep;
    ExecContext ctx;
    ctx.threads = a->threads;
    QuantizeReport rep;
    check_model_not_quantized(a->model);
    std::transform(a->format.begin(), a->format.end(), a->format.begin(), [](unsigned char c) { return char(std::tolower(c)); });
    const bool gptq = a->format == "gptq", awq_format = a->format == "awq";
    if (gptq || awq_format) qo.awq_unit_scale_layers = check_hub_format(a->format, a->mode, adaptive, qo, a->model);
    check_out_against_model(a->out, a->model);
    if (qo.spec.awq) check_out_against_input(a->out, "--calibration", calibration_text(a->calibration, a->model));
    check_out_folder(a->out, a->model, a->overwrite);  // fail before the slow part
    check_side_files(as_source_dir(a->model));
    clean_staging_leftovers(a->out);
    if (qo.spec.awq) {
      check_context_evaluable(a->model, "AWQ calibration windows");
      const std::filesystem::path calib = calibration_text(a->calibration, a->model);
      qo.calibration.tokens = calibration_tokens(
          calib, input_name("--calibration", !a->calibration.empty(), "calibration text"), as_source_dir(a->model),
          qo.calibration);
      // The report goes through print_report: standard output that cannot be written does not stop the folder.
      print_report(stdout, [&] {
        fmt::print("AWQ calibration text {} ({} token{}{})\n", calib.string(), qo.calibration.tokens.size(),
                   qo.calibration.tokens.size() == 1 ? "" : "s",
                   int64_t(qo.calibration.tokens.size()) > qo.calibration.max_tokens
                       ? fmt::format(", the first {} used", qo.calibration.max_tokens)
                       : std::string());
      });
    }
    std::unique_ptr<Model> model;
    std::string mode_name = qo.spec.name();
    std::string linear_vs = "FP32";  // what quantized_bytes_before counts: FP32, or an adaptive plan's on-disk dtype
    std::string kept_note;  // an adaptive plan with --keep: the linear line counts the planned layers alone
    if (adaptive) {  // analyse every layer, plan a format per layer, quantize with the plan
      AdaptiveOptions ao = adaptive_options(a->mode, target_opt->count() > 0, a->target, a->strategy);
      ao.quantize_lm_head = a->lm_head;
      ao.keep_patterns = a->keep;
      try {
        model = load_to_quantize(a->model, ctx);
      } catch (const std::bad_alloc& e) {  // what was being allocated (named by the loader) and why the whole model
        throw OutOfMemory(out_of_memory_text(
            e, " (an adaptive mode loads the whole unquantized model, in its checkpoint dtype (BF16/F16: 2 bytes "
               "per parameter; FP32: 4), to measure every layer before it plans their formats, converting one "
               "layer at a time to FP32; a fixed --mode such as int8 or nf4 holds the quantized model and one "
               "layer's FP32 weights)"));
      }
      AdaptiveModeParts parts;
      (void)parse_adaptive_mode(a->mode, &parts);
      // The default 0.8 is beyond a BF16 / F16 checkpoint's reach: the error says it is the default, and what to give.
      (void)check_adaptive_reach(*model, ao, target_opt->count() == 0 && !parts.target, "--target-reduction");
      AdaptivePlan plan;
      rep = quantize_model_adaptive(*model, ao, &plan);
      print_report(stdout, [&] { print_adaptive_plan(plan); });
      qo = plan.to_options();
      mode_name = adaptive_mode_name(ao);
      linear_vs = linear_basis_label(held_dtype_names(plan));
      if (plan.kept_layers > 0)
        kept_note = fmt::format("; the {} planned layer{}, not the {} kept by --keep", plan.layers.size(),
                                plan.layers.size() == 1 ? "" : "s", plan.kept_layers);
    } else {
      try {
        model = load_quantized(a->model, qo, ctx, &rep);
      } catch (const std::bad_alloc& e) {  // what was being allocated (named by the loader) and why FP32
        throw OutOfMemory(out_of_memory_text(
            e, " (kq quantize converts each linear layer it reads to FP32, 4 bytes per parameter, before "
               "quantizing it, one layer at a time; the embedding tables and an unquantized lm_head are held in "
               "their checkpoint dtype, BF16/F16 or FP32, from the start: the peak is about the quantized model "
               "plus one layer's FP32 weights; AWQ modes hold the whole model in its checkpoint dtype for the "
               "calibration, and one layer's FP32 weights)"));
      }
    }
    int quantized = 0;
    for (const auto& l : rep.layers) quantized += l.quantized ? 1 : 0;
    if (quantized == 0)  // every layer kept: writing a copy of the model would pass for a quantization
      raise<InvalidArgument>(
          "nothing to quantize: every one of the {} linear layers of '{}' is kept in high precision{}; no folder "
          "written",
          rep.layers.size(), a->model,
          a->keep.empty() ? std::string()
                          : fmt::format(" (--keep {})", fmt::join(a->keep.begin(), a->keep.end(), " --keep ")));
    check_model_files_unchanged("no folder written");
    // The staging folder is removed as the save fails (io::AtomicDir), before the error is reported, and then the
    // folders made above it.
    const std::unique_ptr<io::MadeFolders> parents = make_out_parents(a->out);
    write_from_model_files(
        [&] {
          if (gptq)
            save_gptq_model(*model, qo, a->out, a->overwrite);
          else if (awq_format)
            save_awq_model(*model, qo, a->out, a->overwrite);
          else
            save_quantized_model(*model, qo, a->out, a->overwrite);
        },
        "no folder written");
    if (parents) parents->keep();
    check_model_files_unchanged(fmt::format("--out '{}' was written from it: remove it", a->out));
    const bool awq_table =
        std::any_of(rep.layers.begin(), rep.layers.end(), [](const auto& l) { return l.awq_alpha >= 0; });
    print_report(stdout, [&] {
      if (awq_table) {
        // Per layer: the scale form and alpha chosen and the output error on the calibration rows, RTN vs AWQ.
        // s = |x|^a: the paper's form; s = |x|^a/|w|^(1-a): AutoAWQ's duo scaling.
        // The error: relative squared output error on the calibration rows, ||X (W - Q(W))^T||^2 / ||X W^T||^2
        // (awq::ScaleSearch), a fraction without unit. Layers reading one input (q/k/v, gate/up) share one s,
        // searched over their outputs together: their rows repeat the group's numbers, marked in the last column.
        fmt::print("AWQ scale search (error: relative squared output error on the calibration rows, "
                   "||X (W - Q(W))^T||^2 / ||X W^T||^2, no unit; RTN: round to nearest without s)\n");
        fmt::print("{:<48} {:>15} {:>5}  {:>14}  {:>14}  {}\n", "layer", "s", "alpha", "RTN rel. error",
                   "AWQ rel. error", "s searched");
        const auto short_name = [](const std::string& name) {  // "model.layers.0.self_attn.q_proj" -> "q_proj"
          const size_t dot = name.rfind('.');
          return dot == std::string::npos ? name : name.substr(dot + 1);
        };
        for (const auto& l : rep.layers) {
          if (l.awq_alpha < 0) continue;
          std::vector<std::string> members;
          for (const std::string& m : l.awq_group) members.push_back(short_name(m));
          fmt::print("{:<48} {:>15} {:>5.2f}  {:>14.3e}  {:>14.3e}  {}\n", l.name,
                     l.awq_unit_scale ? "1" : l.awq_duo ? "|x|^a/|w|^(1-a)" : "|x|^a", l.awq_alpha, l.awq_rtn_error,
                     l.awq_error,
                     l.awq_unit_scale ? std::string("not searched: s = 1, as it cannot be folded into v_proj "
                                                    "(grouped-query attention; --format awq)")
                     : members.empty() ? std::string("alone")
                                       : fmt::format("jointly for {} (the group's errors)", fmt::join(members, "+")));
        }
      }
      fmt::print("quantized {} of {} linear layers to {} in {:.2f} s\n", quantized, rep.layers.size(), mode_name,
                 rep.seconds);
      fmt::print("linear weights {} -> {} ({:.1f} % smaller vs {}, {:.3f} bits/weight{})\n",
                 human_bytes(rep.quantized_bytes_before), human_bytes(rep.quantized_bytes_after),
                 reduction_pct(rep.quantized_bytes_before, rep.quantized_bytes_after), linear_vs,
                 rep.bits_per_weight(), kept_note);
      // disk_weight_bytes counts the tensors the model read, not the source's unused ones (not copied either).
      const size_t unused = model->unused_source_tensors().size();
      fmt::print("whole model in memory {} (on disk before: {}{})\n", human_bytes(model->weight_bytes()),
                 human_bytes(model->disk_weight_bytes()),
                 unused == 0 ? std::string()
                             : fmt::format(", the tensors it uses; the {} unused tensor{} of --model {} not copied",
                                           unused, unused == 1 ? "" : "s", unused == 1 ? "is" : "are"));
      if (gptq)
        fmt::print("wrote {} (GPTQ v1 checkpoint, quant_method gptq, group_size {}, sym {}: scales and unquantized "
                   "tensors as FP16)\n",
                   a->out, qo.spec.block_size, qo.spec.symmetric ? "true" : "false");
      else if (awq_format)
        fmt::print("wrote {} (AutoAWQ checkpoint, quant_method awq, version gemm, group_size {}{}: s folded into the "
                   "norms, up_proj and v_proj; scales and unquantized tensors as FP16)\n",
                   a->out, qo.spec.block_size, qo.spec.symmetric ? ", zero points 8 (symmetric)" : "");
      else
        fmt::print("wrote {}\n", a->out);
    });
  });
}

}  // namespace kq::cli
