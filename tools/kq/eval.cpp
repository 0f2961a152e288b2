// `kq eval`: perplexity of a model on a text file (docs/EVALUATION.md protocol).
#include "kq/eval.hpp"

#include <fmt/core.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <nlohmann/json.hpp>
#include <map>
#include <string>

#include "commands.hpp"
#include "eval_options.hpp"
#include "format_util.hpp"
#include "int_option.hpp"
#include "path_option.hpp"
#include "kq/bench.hpp"
#include "kq/context.hpp"
#include "core/out_of_memory.hpp"
#include "io/atomic_file.hpp"
#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kernels/linear.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "model_context.hpp"
#include "model_files.hpp"
#include "progress.hpp"
#include "threads_option.hpp"
#include "weight_formats.hpp"

namespace kq::cli {
namespace {

struct EvalOptions {
  std::string model;
  std::string text;
  int ctx = 0;
  int samples = 0;
  int threads = 0;
  std::string device = "cpu";
  std::string json;
  bool quiet = false;
  bool special_tokens = false;
};

void run_eval(const EvalOptions& o) {
  if (o.ctx < 0) raise<InvalidArgument>("--ctx must be >= 0 (0 = the model's context), got {}", o.ctx);
  if (o.samples < 0) raise<InvalidArgument>("--samples must be >= 0 (0 = all windows), got {}", o.samples);
  if (o.threads < 0) raise<InvalidArgument>("--threads must be >= 0 (0 = all cores), got {}", o.threads);
  const ExecContext ctx{parse_device(o.device), o.threads};
  check_input_file("--text", o.text);
  check_json_output(o.json, o.text, o.model);
  if (o.ctx == 0) {
    check_context_evaluable(o.model, "perplexity windows");
    if (const std::string w = long_default_window_warning(o.model, ctx.device); !w.empty()) warn(w);
  }
  // Check the cheap argument first; invalid UTF-8 is an error naming the byte offset.
  const std::string text = io::read_utf8_text_file(o.text, uint64_t(1) << 31);
  std::unique_ptr<Model> model;
  try {
    model = Model::load(o.model, ctx);
  } catch (const std::bad_alloc& e) {
    // What was being allocated (the weight's FP32 copy, named by the loader) and why FP32.
    throw OutOfMemory(out_of_memory_text(
        e, " (kq eval holds the weights of an unquantized model in FP32, 4 bytes per parameter, as kq bench's "
           "baseline; a folder written by kq quantize needs less)"));
  }
  const Tokenizer tok = Tokenizer::load(o.model);
  tok.check_fits(model->config().vocab_size, o.model);
  const std::vector<int32_t> tokens = tok.encode(text, EncodeOptions{.allow_special = o.special_tokens});
  if (tokens.size() < 2)  // named here: evaluate_perplexity does not know the file
    raise<InvalidArgument>("--text '{}': the text has {} token{}, fewer than the 2 needed to score one", o.text,
                           tokens.size(), tokens.size() == 1 ? "" : "s");

  Progress bar("windows", !o.quiet);
  PerplexityResult r;
  try {
    r = evaluate_perplexity(*model, tokens, o.ctx, o.samples, [&](int64_t d, int64_t t) { bar.update(d, t); });
  } catch (const Error&) {
    // A model file rewritten in place during the run can give non-finite logits: name the file, not the logits.
    bar.finish();
    check_model_files_unchanged();
    throw;
  } catch (const std::bad_alloc& e) {  // (the logits buffer of a large vocabulary, named by the evaluation)
    bar.finish();
    throw OutOfMemory(out_of_memory_text(
        e, fmt::format(" (the logits of up to {} tokens are held at a time; a smaller --ctx holds fewer)",
                       Model::prefill_chunk())));
  }
  bar.finish();
  check_model_files_unchanged();
  if (o.samples > r.windows)
    warn(samples_beyond_text_warning(o.samples, r.windows, int64_t(tokens.size()), r.ctx));
  if (std::isinf(r.ppl))
    warn(perplexity_overflow_warning({"the model"}, fmt::format(" (mean_nll {:.6g})", r.mean_nll())));

  const double tps = r.seconds > 0 ? double(r.scored_tokens) / r.seconds : 0.0;
  // --json -: standard output carries the JSON alone, the report goes to standard error.
  const bool json_stdout = o.json == "-";
  std::FILE* out = json_stdout ? stderr : stdout;
  std::map<std::string, int> formats;
  std::string lm_head_format;
  const std::string weights = weight_formats(*model, formats, lm_head_format);
  // The report is out (flushed: stdout may be a file or a pipe) before the JSON is written, which a report
  // that cannot be written does not stop (print_report).
  print_report(out, [&] {
    fmt::print(out, "model:         {} ({}, {} layers, hidden {}, vocab {})\n", o.model,
               arch_name(model->config().arch), model->config().num_layers, model->config().hidden_size,
               model->config().vocab_size);
    fmt::print(out, "weights:       {}\n", weights);
    fmt::print(out, "tokenizer:     {}\n", tok.source());
    fmt::print(out, "text:          {}{} ({})\n", o.text, o.special_tokens ? ", special tokens recognized" : "",
               count_noun(static_cast<long long>(tokens.size()), "token"));
    fmt::print(out, "perplexity:    {:.4f}\n", r.ppl);
    fmt::print(out, "scored tokens: {} in {} window{} of up to {} tokens{}\n", r.scored_tokens, r.windows,
               r.windows == 1 ? "" : "s", r.ctx,
               !o.samples || o.samples > r.windows ? std::string()
               : o.samples == 1                    ? std::string(" (first window only)")
                                                   : fmt::format(" (first {} windows only)", o.samples));
    fmt::print(out, "time:          {:.2f} s ({:.0f} tokens/s, {})\n", r.seconds, tps,
               ctx.device == Device::CPU ? count_noun(resolve_threads(o.threads), "thread")
                                         : device_name(ctx.device));
  });

  if (!o.json.empty()) {
    const nlohmann::json j = {
        {"ppl", r.ppl},
        {"nll", r.nll},
        {"mean_nll", r.mean_nll()},
        {"scored_tokens", r.scored_tokens},
        {"ctx", r.ctx},
        {"windows", r.windows},
        {"samples", o.samples},  // the --samples limit (0 = all windows), as in kq bench --json
        {"text_tokens", tokens.size()},
        {"model", o.model},
        {"arch", arch_name(model->config().arch)},
        // The model's shape, as the report's "model:" line gives it.
        {"num_layers", model->config().num_layers},
        {"hidden_size", model->config().hidden_size},
        {"vocab_size", model->config().vocab_size},
        {"weight_formats", formats},  // format -> linear layers holding it (lm_head apart)
        {"lm_head_format", lm_head_format},
        {"text", o.text},
        {"tokenizer", tok.source()},
        {"special_tokens", o.special_tokens},
        {"seconds", r.seconds},
        {"tokens_per_second", tps},
        {"threads", resolve_threads(o.threads)},
        {"device", device_name(ctx.device)},
        {"kq_version", version()},  // the kq that ran (kq --version), as in kq bench --json
    };
    if (json_stdout) {
      fmt::print("{}\n", io::json_text(j, 2));
      flush_stdout();
    } else if (write_json_file(o.json, io::json_text(j, 2) + "\n")) {
      print_report(stdout, [&] { fmt::print("wrote {}\n", o.json); });
    }
  }
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto opts = std::make_shared<EvalOptions>();
  auto* cmd = app.add_subcommand("eval", "Perplexity of a model on a text file (non-overlapping windows)");
  cmd->add_option("--model,-m", opts->model, "Model folder (config.json, safetensors, tokenizer): a Hugging Face checkpoint, a kq "
                  "quantize folder, or an AutoAWQ / AutoGPTQ / bitsandbytes quantized checkpoint")
      ->required()
      ->check(non_empty_path("folder"));
  add_text_option(cmd, opts->text);
  cmd->add_option("--ctx", opts->ctx, "Window length in tokens (0 = the model's context length)")
      ->transform(window_length())
      ->capture_default_str();
  add_samples_option(cmd, opts->samples);
  add_threads_option(cmd, opts->threads);
  add_device_option(cmd, opts->device);
  cmd->add_option(
      "--json", opts->json,
      "Also write the results as JSON to this file (atomically; missing folders above it are made; default: none). "
      "It must not be the --text "
      "file or an existing file inside the --model folder (a new file there is fine). '-': the JSON goes to "
      "standard output and the human-readable report to standard error; /dev/null: nothing is written. "
      "Its keys: README.md (kq compare), schema in tools/kq/eval.cpp")
      ->check(non_empty_path("file"));
  cmd->add_flag(
      "--special-tokens", opts->special_tokens,
      "Also recognize special added tokens such as <|endoftext|> in the text and score their ids (as Hugging "
      "Face tokenizers do); default: they are text (added tokens that are not special are always recognized)");
  cmd->add_flag("--quiet", opts->quiet, "No progress bar");
  cmd->callback([opts] { run_eval(*opts); });
}

}  // namespace kq::cli
