// `kq compare`: a candidate model (e.g. a quantized folder) against a reference
// (e.g. its original) on the same windows of one text: both perplexities, the
// KL divergence of their next-token distributions, top-1 agreement, weight memory.
#include <fmt/core.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "commands.hpp"
#include "eval_options.hpp"
#include "format_util.hpp"
#include "int_option.hpp"
#include "io/file_kind.hpp"
#include "io/json_strict.hpp"
#include "io/utf8_text.hpp"
#include "kq/bench.hpp"
#include "kq/config.hpp"
#include "kq/context.hpp"
#include "kq/error.hpp"
#include "kq/info.hpp"
#include "kq/eval.hpp"
#include "kq/model.hpp"
#include "kq/tokenizer.hpp"
#include "kq/warning.hpp"
#include "model_context.hpp"
#include "model_files.hpp"
#include "path_option.hpp"
#include "progress.hpp"
#include "threads_option.hpp"
#include "weight_formats.hpp"

namespace kq::cli {
namespace {

namespace fs = std::filesystem;

struct CompareOptions {
  std::string reference, candidate, text, device = "cpu", json;
  int ctx = 0, samples = 0, threads = 0;
  bool quiet = false, special_tokens = false;
};

/// One of the two models, loaded, with what the report says of it.
struct Side {
  const char* role;  ///< "reference" / "candidate"
  std::string dir;
  ModelConfig config;
  std::optional<Tokenizer> tok;
  std::shared_ptr<Model> model;  ///< shared: the same folder twice is loaded once
  std::map<std::string, int> formats;
  std::string lm_head_format, weights;  ///< weight_formats()
  size_t weight_bytes = 0;
  bool quantized = false;  ///< some linear layer is not "f32" (weight_bytes: as held, else on-disk dtype)
};

/// Throws InvalidArgument "reference 'DIR' is not a model folder (not found)" (or what
/// the path is instead) unless `dir` is an existing folder.
void check_model_folder(const char* role, const std::string& dir) {
  std::error_code ec;
  if (!fs::exists(dir, ec)) {  // (a symbolic link loop: said, not thrown)
    const std::string why = io::why_not_regular_file(dir).value_or("not found");
    raise<InvalidArgument>("{} '{}' is not a model folder ({})", role, dir,
                           why == "not found" ? std::string("not found") : why);
  }
  if (!fs::is_directory(dir, ec)) raise<InvalidArgument>("{} '{}' is not a model folder (not a folder)", role, dir);
}

/// The weight bytes `kq bench` reports: an unquantized model (every linear layer "f32", as
/// bench's baseline) in its on-disk dtype (bench's "before"), a quantized one as held in
/// memory (bench's "after").
void count_weights(Side& s) {
  s.weights = weight_formats(*s.model, s.formats, s.lm_head_format);
  for (const LinearSlot& l : s.model->linear_layers()) s.quantized = s.quantized || (*l.op)->format() != "f32";
  s.weight_bytes = s.quantized ? s.model->weight_bytes() : s.model->disk_weight_bytes();
}

/// Throws InvalidArgument naming both folders when the two models cannot be
/// compared token by token: config.json vocabulary sizes that differ, or
/// tokenizers that turn the text into different ids (the first differing
/// position named). `ref_ids` / `cand_ids`: the text as each tokenizer encodes it.
void check_same_tokens(const Side& ref, const Side& cand, const std::vector<int32_t>& ref_ids,
                       const std::vector<int32_t>& cand_ids, const std::string& text_file) {
  const size_t n = std::min(ref_ids.size(), cand_ids.size());
  const size_t at = size_t(std::mismatch(ref_ids.begin(), ref_ids.begin() + ptrdiff_t(n), cand_ids.begin()).first -
                           ref_ids.begin());
  if (at == n && ref_ids.size() == cand_ids.size()) return;
  const auto token = [](const Side& s, int32_t id) { return fmt::format("id {} '{}'", id, s.tok->decode({&id, 1})); };
  const std::string where =
      at < n ? fmt::format("at token {}: {} in the reference, {} in the candidate", at, token(ref, ref_ids[at]),
                           token(cand, cand_ids[at]))
             : fmt::format("the {} ends at token {}", ref_ids.size() < cand_ids.size() ? "reference's" : "candidate's",
                           n);
  raise<InvalidArgument>(
      "reference '{}' and candidate '{}' do not share a tokenizer: --text '{}' is {} tokens by the reference's "
      "({}) and {} by the candidate's ({}), first different {}; kq compare compares two models token by token "
      "(e.g. a model and a quantization of it)",
      ref.dir, cand.dir, text_file, ref_ids.size(), ref.tok->source(), cand_ids.size(), cand.tok->source(), where);
}

/// A compare_models error as `kq compare` says it: "the reference model 'DIR'" for
/// compare_models' "compare_models: the reference model" (which main.cpp would name
/// bench's baseline). Other messages are returned unchanged.
std::string with_model_names(std::string m, const Side& ref, const Side& cand) {
  for (const Side* s : {&ref, &cand}) {
    const std::string api = fmt::format("compare_models: the {} model", s->role);
    if (const size_t at = m.find(api); at != std::string::npos)
      m.replace(at, api.size(), fmt::format("the {} model '{}'", s->role, s->dir));
  }
  return m;
}

/// "gpt2, 2 layers, hidden 128, vocab 50257", as kq eval's "model:" line.
std::string shape(const ModelConfig& c) {
  return fmt::format("{}, {} layers, hidden {}, vocab {}", arch_name(c.arch), c.num_layers, c.hidden_size,
                     c.vocab_size);
}

/// The model's half of the --json document.
nlohmann::json side_json(const Side& s, double ppl, double nll, int64_t scored) {
  return {
      {"model", s.dir},
      {"arch", arch_name(s.config.arch)},
      {"num_layers", s.config.num_layers},
      {"hidden_size", s.config.hidden_size},
      {"vocab_size", s.config.vocab_size},
      {"weight_formats", s.formats},  // format -> linear layers holding it (lm_head apart)
      {"lm_head_format", s.lm_head_format},
      {"tokenizer", s.tok->source()},
      {"ppl", ppl},  // inf (null here) where it overflowed; mean_nll stays finite
      {"nll", nll},
      {"mean_nll", scored ? nll / double(scored) : 0.0},
      {"weight_bytes", s.weight_bytes},
      // what weight_bytes counts: bench's "before" (unquantized, on-disk dtype) or "after" (held in memory)
      {"weight_bytes_counted", s.quantized ? "in memory" : "on-disk dtype"},
  };
}

void run_compare(const CompareOptions& o) {
  const ExecContext ctx{parse_device(o.device), o.threads};
  Side ref{"reference", o.reference}, cand{"candidate", o.candidate};
  check_model_folder("reference", ref.dir);
  check_model_folder("candidate", cand.dir);
  check_input_file("--text", o.text);
  if (!o.json.empty() && o.json != "-") {  // neither folder's files may be replaced, nor the text
    check_not_model_file("--json", o.json, ref.dir, "reference");
    check_not_model_file("--json", o.json, cand.dir, "candidate");
  }
  check_json_output(o.json, o.text, {});
  std::error_code ec;
  const bool same_folder = fs::equivalent(ref.dir, cand.dir, ec);
  for (Side* s : {&ref, &cand}) {
    s->config = load_model_config(s->dir);
    if (o.ctx == 0) check_context_evaluable(s->dir, "perplexity windows");
  }
  if (ref.config.vocab_size != cand.config.vocab_size)
    raise<InvalidArgument>(
        "reference '{}' and candidate '{}' do not share a vocabulary: vocab_size {} ({}) vs {} ({}); kq compare "
        "compares two models token by token (e.g. a model and a quantization of it)",
        ref.dir, cand.dir, ref.config.vocab_size, (fs::path(ref.dir) / "config.json").string(),
        cand.config.vocab_size, (fs::path(cand.dir) / "config.json").string());
  // The windows fit the shorter context: a --ctx beyond it is named with its model; without --ctx, they are that
  // context, warned of when even that one is long.
  const Side& shorter = ref.config.max_positions <= cand.config.max_positions ? ref : cand;
  if (o.ctx > shorter.config.max_positions)
    raise<InvalidArgument>("--ctx {} is longer than the {} model's context, {} positions ({} in {})", o.ctx,
                           shorter.role, shorter.config.max_positions, shorter.config.size_keys.max_positions,
                           (fs::path(shorter.dir) / "config.json").string());
  if (o.ctx == 0)
    if (const std::string w = long_default_window_warning(shorter.dir, ctx.device); !w.empty()) warn(w);
  const std::string text = io::read_utf8_text_file(o.text, uint64_t(1) << 31);
  const EncodeOptions enc{.allow_special = o.special_tokens};
  std::vector<int32_t> tokens, cand_tokens;
  for (Side* s : {&ref, &cand}) {
    s->tok = Tokenizer::load(s->dir);
    s->tok->check_fits(s->config.vocab_size, s->dir);
    (s == &ref ? tokens : cand_tokens) = s->tok->encode(text, enc);
  }
  check_same_tokens(ref, cand, tokens, cand_tokens, o.text);
  if (tokens.size() < 2)
    raise<InvalidArgument>("--text '{}': the text has {} token{}, fewer than the 2 needed to score one", o.text,
                           tokens.size(), tokens.size() == 1 ? "" : "s");

  const auto t0 = std::chrono::steady_clock::now();
  ref.model = Model::load(ref.dir, ctx);
  cand.model = same_folder ? ref.model : std::shared_ptr<Model>(Model::load(cand.dir, ctx));
  const double load_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  count_weights(ref);
  count_weights(cand);

  Progress bar("windows", !o.quiet);
  ComparisonResult r;
  try {
    r = compare_models(*ref.model, *cand.model, tokens, o.ctx, o.samples,
                       [&](int64_t d, int64_t t) { bar.update(d, t); });
  } catch (const Error& e) {
    // A model file rewritten in place during the run can give non-finite logits: name the file, not the logits.
    bar.finish();
    check_model_files_unchanged();
    const std::string named = with_model_names(e.what(), ref, cand);
    if (named == e.what()) throw;
    raise<Error>("{}", named);  // (compare_models' non-finite logits: an Error, as thrown)
  }
  bar.finish();
  check_model_files_unchanged();
  if (o.samples > r.windows)
    warn(samples_beyond_text_warning(o.samples, r.windows, int64_t(tokens.size()), r.ctx));
  std::vector<std::string> overflowed;
  if (std::isinf(r.ppl_ref)) overflowed.push_back("the reference");
  if (std::isinf(r.ppl_cand)) overflowed.push_back("the candidate");
  if (!overflowed.empty())
    warn(perplexity_overflow_warning(overflowed, "; the change is computed from the mean NLLs (exp(candidate - "
                                                 "reference) - 1)"));

  // As kq bench's ppl_delta_pct: exp(Δ mean NLL) - 1, finite even where a perplexity overflowed to inf.
  const double n = double(r.scored_tokens);
  const double delta_pct = std::expm1(r.nll_cand / n - r.nll_ref / n) * 100.0;
  const double reduction = reduction_pct(ref.weight_bytes, cand.weight_bytes);
  // --json -: standard output carries the JSON alone, the report goes to standard error.
  const bool json_stdout = o.json == "-";
  std::FILE* out = json_stdout ? stderr : stdout;
  const auto counted = [](const Side& s) { return s.quantized ? "in memory" : "on-disk dtype"; };
  print_report(out, [&] {
    fmt::print(out, "KernelQuant compare\n");
    for (const Side* s : {&ref, &cand})
      fmt::print(out, "  {:<9}  {} ({})\n             weights {}\n", s->role, s->dir, shape(s->config), s->weights);
    fmt::print(out, "  tokenizer  {}{}\n", same_folder ? ref.tok->source() : ref.dir + ": " + ref.tok->source(),
               same_folder ? "" : fmt::format("; {}: {} (the same tokens)", cand.dir, cand.tok->source()));
    fmt::print(out, "  text       {}{} ({})\n", o.text, o.special_tokens ? ", special tokens recognized" : "",
               count_noun(static_cast<long long>(tokens.size()), "token"));
    fmt::print(out, "  windows    {} of ctx {} ({} scored tokens{})\n", r.windows, r.ctx, r.scored_tokens,
               o.samples ? fmt::format(", --samples {}", o.samples) : "");
    fmt::print(out, "  device     {}\n\n",
               ctx.device == Device::CPU ? fmt::format("cpu ({})", count_noun(resolve_threads(o.threads), "thread"))
                                         : std::string(device_name(ctx.device)));
    // Figures of one model in its column; those of the pair (KL, agreement) in the last.
    const double change = reduction == 0 ? 0.0 : -reduction;  // (not "-0.0 %")
    fmt::print(out, "{}",
               align_columns({{"", "reference", "candidate", "candidate vs reference"},
                              {"perplexity", fmt::format("{:.4f}", r.ppl_ref), fmt::format("{:.4f}", r.ppl_cand),
                               fmt::format("{:+.2f} %", delta_pct)},
                              {"mean NLL", fmt::format("{:.4f}", r.nll_ref / n), fmt::format("{:.4f}", r.nll_cand / n),
                               "nats/token"},
                              {"weights", human_bytes(ref.weight_bytes), human_bytes(cand.weight_bytes),
                               fmt::format("{:+.1f} % ({} vs {})", change, counted(ref), counted(cand))},
                              {"KL(ref||cand)", "", "", fmt::format("{:.5f} nats/token", r.mean_kl)},
                              {"top-1 agreement", "", "", fmt::format("{:.2f} %", r.top1_agreement * 100)}},
                             false));
    fmt::print(out, "time {:.2f} s ({:.0f} scored tokens/s through both models), load {:.2f} s\n", r.seconds,
               r.seconds > 0 ? n / r.seconds : 0.0, load_seconds);
  });

  if (o.json.empty()) return;
  const nlohmann::json j = {
      {"reference", side_json(ref, r.ppl_ref, r.nll_ref, r.scored_tokens)},
      {"candidate", side_json(cand, r.ppl_cand, r.nll_cand, r.scored_tokens)},
      {"ppl_delta_pct", delta_pct},            // (ppl candidate / ppl reference - 1) · 100, from the mean NLLs
      {"kl_div", r.mean_kl},                   // mean KL(P_reference ‖ P_candidate) over the scored tokens, nats
      {"top1_agreement_pct", r.top1_agreement * 100},  // per cent of the scored tokens, as printed
      {"weight_reduction_pct", reduction},     // 1 - candidate / reference weight_bytes, per cent
      {"scored_tokens", r.scored_tokens},
      {"windows", r.windows},
      {"ctx", r.ctx},
      {"samples", o.samples},  // the --samples limit (0 = all windows), as in kq eval --json
      {"text", o.text},
      {"text_tokens", tokens.size()},
      {"special_tokens", o.special_tokens},
      {"seconds", r.seconds},  // the comparison (both models' forward passes)
      {"load_seconds", load_seconds},
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

}  // namespace

void add_compare_command(CLI::App& app) {
  auto opts = std::make_shared<CompareOptions>();
  auto* cmd = app.add_subcommand(
      "compare",
      "A candidate model (e.g. quantized) against a reference on one text: perplexities, KL, top-1 agreement, memory");
  cmd->add_option("reference", opts->reference,
                  "The reference model folder (e.g. the original Hugging Face model)")
      ->required()
      ->check(non_empty_path("folder"));
  cmd->add_option("candidate", opts->candidate,
                  "The candidate model folder: a kq quantize folder, an AutoAWQ / AutoGPTQ / bitsandbytes "
                  "checkpoint, or any folder kq eval takes; it must tokenize the text as the reference does")
      ->required()
      ->check(non_empty_path("folder"));
  add_text_option(cmd, opts->text);
  cmd->add_option("--ctx", opts->ctx, "Window length in tokens (0 = the shorter of the two models' contexts)")
      ->transform(window_length())
      ->capture_default_str();
  add_samples_option(cmd, opts->samples);
  add_threads_option(cmd, opts->threads);
  add_device_option(cmd, opts->device);
  cmd->add_option(
         "--json", opts->json,
         "Also write the results as JSON to this file (atomically; missing folders above it are made; default: "
         "none). It must not be the --text "
         "file or an existing file inside either model folder (a new file there is fine). '-': the JSON goes to "
         "standard output and the human-readable report to standard error; /dev/null: nothing is written. "
      "Its keys: README.md (kq compare), schema in tools/kq/compare.cpp")
      ->check(non_empty_path("file"));
  cmd->add_flag(
      "--special-tokens", opts->special_tokens,
      "Also recognize special added tokens such as <|endoftext|> in the text and score their ids (as Hugging "
      "Face tokenizers do); default: they are text (added tokens that are not special are always recognized)");
  cmd->add_flag("--quiet", opts->quiet, "No progress bar");
  cmd->callback([opts] { run_compare(*opts); });
}

}  // namespace kq::cli
