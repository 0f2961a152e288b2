// `kq quantize`: write a quantized model folder.
#include <fmt/core.h>

#include <filesystem>
#include <string>
#include <vector>

#include "commands.hpp"
#include "format_util.hpp"
#include "int_option.hpp"
#include "io/atomic_dir.hpp"
#include "kq/context.hpp"
#include "kq/error.hpp"
#include "kq/optimizer.hpp"
#include "kq/warning.hpp"
#include "mode_option.hpp"
#include "threads_option.hpp"

namespace kq::cli {
namespace {

/// Warns about `<out>.tmp-XXXXXX` / `<out>.old-XXXXXX` folders left next to
/// --out by an interrupted (killed, crashed) or still-running kq quantize.
/// They are named, never deleted: another process may be writing one.
void warn_staging_leftovers(const std::string& out) {
  const std::vector<std::filesystem::path> left = io::staging_leftovers(out);
  if (left.empty()) return;
  std::string names;
  for (const auto& p : left) names.append(names.empty() ? "'" : ", '").append(p.string()).append("'");
  warn(fmt::format(
      "--out '{}': {} unfinished output folder{} of an interrupted or still-running kq quantize next to it: {} "
      "(not deleted; remove {} if no kq quantize is writing '{}')",
      out, left.size(), left.size() == 1 ? "" : "s", names, left.size() == 1 ? "it" : "them", out));
}

}  // namespace

void add_quantize_command(CLI::App& app) {
  struct Args {
    std::string model, mode, out;
    std::vector<std::string> keep;
    bool lm_head = false, overwrite = false;
    int threads = 0;
  };
  auto a = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("quantize", "Quantize a Hugging Face model folder and write a KernelQuant folder");
  cmd->add_option("--model,-m", a->model, "Source model folder (config.json + safetensors + tokenizer)")->required();
  cmd->add_option("--mode", a->mode,
                  "Quantization mode: int8 int4 nf4 fp4 int4-g128 fp8 fp8-e5m2 int8-wo ...")
      ->required()
      ->check(cli::quant_mode());
  cmd->add_option("--out,-o", a->out, "Output folder (written atomically)")->required();
  cmd->add_flag("--quantize-lm-head", a->lm_head, "Quantize lm_head too (default: keep it in FP32)");
  cmd->add_option(
      "--keep", a->keep,
      "Regex of layer names to keep in high precision (repeatable; one that matches no layer is warned)");
  cmd->add_flag("--overwrite", a->overwrite, "Replace OUT if it exists (atomically)");
  add_threads_option(cmd, a->threads);
  cmd->callback([a] {
    // Ctrl-C, SIGTERM or SIGHUP while the folder is written removes the
    // staging folder (<out>.tmp-XXXXXX) before the signal ends the process.
    io::remove_staging_dirs_on_signals();
    QuantizeOptions qo;
    qo.spec = parse_quant_mode(a->mode);
    qo.quantize_lm_head = a->lm_head;
    qo.keep_patterns = a->keep;
    ExecContext ctx;
    ctx.threads = a->threads;
    QuantizeReport rep;
    check_quantized_output(a->out, a->model, a->overwrite);  // fail before the slow part
    warn_staging_leftovers(a->out);
    auto model = load_quantized(a->model, qo, ctx, &rep);
    save_quantized_model(*model, qo, a->out, a->overwrite);
    int quantized = 0;
    for (const auto& l : rep.layers) quantized += l.quantized ? 1 : 0;
    fmt::print("quantized {} of {} linear layers to {} in {:.2f} s\n", quantized, rep.layers.size(),
               qo.spec.name(), rep.seconds);
    fmt::print("linear weights {} -> {} ({:.1f} % smaller, {:.3f} bits/weight)\n",
               human_bytes(rep.quantized_bytes_before), human_bytes(rep.quantized_bytes_after),
               reduction_pct(rep.quantized_bytes_before, rep.quantized_bytes_after), rep.bits_per_weight());
    fmt::print("whole model in memory {} (on disk before: {})\n", human_bytes(model->weight_bytes()),
               human_bytes(model->disk_weight_bytes()));
    fmt::print("wrote {}\n", a->out);
  });
}

}  // namespace kq::cli
