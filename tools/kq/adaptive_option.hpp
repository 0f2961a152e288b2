#pragma once
// `kq quantize --mode adaptive`: the adaptive-precision options from the mode
// name and --target-reduction / --strategy, and the printed per-layer plan.
#include <fmt/format.h>

#include <CLI/CLI.hpp>
#include <cmath>
#include <string>

#include "format_util.hpp"
#include "kq/adaptive.hpp"
#include "kq/error.hpp"
#include "real_option.hpp"

namespace kq::cli {

/// A mode name for a message: as given up to 48 characters, else its first 40
/// and its length (a name of 400 digits is not echoed whole).
inline std::string shown_mode(const std::string& name) {
  if (name.size() <= 48) return name;
  return fmt::format("{}... ({} characters)", name.substr(0, 40), name.size());
}

/// adaptive_reduction_limit(o, held) in per cent, floored to 2 decimals (so
/// that any target up to the printed figure can be reached): 87.10 for F32,
/// 74.20 for BF16 / F16 with the default candidates. A model's own reach is
/// lower by its biases and shapes (llama-small: 74.19 %, 0.741999 in
/// check_adaptive_options's error).
inline double reduction_limit_pct(const AdaptiveOptions& o, DType held = DType::F32) {
  return std::floor(adaptive_reduction_limit(o, held) * 1e4) / 1e2;
}

/// "" when `o`'s target can be reached on some model; otherwise why not: no
/// model lets o's formats remove more than adaptive_reduction_limit(o) of its
/// linear layers' bytes (NF4 everywhere on an F32 checkpoint: 87.1 %; a 16-bit
/// checkpoint reaches less, which the message says and the check after loading,
/// check_adaptive_options, enforces), so a larger target is a usage error,
/// found before the model is loaded. `what` names the value: the mode, or
/// (option_given) --target-reduction, whose range is then given as a fraction.
inline std::string adaptive_target_beyond_limit(const AdaptiveOptions& o, const std::string& what,
                                                bool option_given = false) {
  const double limit = adaptive_reduction_limit(o);
  if (o.target_reduction <= limit) return {};
  const double pct = reduction_limit_pct(o);                // 87.10: below the limit, as printed
  const double pct16 = reduction_limit_pct(o, DType::BF16);  // 74.20
  return fmt::format(
      "{}: a target reduction of {:g} % cannot be reached on any model: with int8, nf4 or unquantized per layer "
      "at most {:.2f} % of the linear layers' bytes can be removed (nf4 everywhere, F32 checkpoint; {:.2f} % of "
      "a BF16 / F16 checkpoint's); {}",
      what, std::round(o.target_reduction * 1e6) / 1e4, pct, pct16,
      option_given ? fmt::format("give a value in (0, {:.4f}]", pct / 100)
                   : fmt::format("give adaptive-rP with P in (0, {:.2f}]", pct));
}

/// parse_adaptive_mode(mode), then --target-reduction (when given, in (0, 1))
/// and --strategy (when not empty) fill in what the name leaves to the
/// defaults. An option that disagrees with what the name states
/// ("adaptive-r70" with --target-reduction 0.5, "adaptive-error" with
/// --strategy uniform; the same value twice is fine), a target no model can
/// reach (adaptive_target_beyond_limit), or one finer than 0.000001 from
/// either end, is a usage error (CLI::ValidationError, exit status 2) before
/// the model is loaded.
inline AdaptiveOptions adaptive_options(const std::string& mode, bool target_given, double target,
                                        const std::string& strategy) {
  AdaptiveModeParts parts;
  AdaptiveOptions o = parse_adaptive_mode(mode, &parts);
  if (target_given && parts.target && std::round(target * 1e6) != std::round(o.target_reduction * 1e6))
    throw CLI::ValidationError(fmt::format(
        "--mode {} asks for a target reduction of {:g} % but --target-reduction {} for {:g} %: give one of them "
        "(or the same value in both)",
        shown_mode(mode), std::round(o.target_reduction * 1e6) / 1e4, target, std::round(target * 1e6) / 1e4));
  if (target_given) o.target_reduction = target;
  if (!strategy.empty()) {
    const AllocationStrategy s = parse_allocation_strategy(strategy);
    if (parts.strategy && s != o.strategy)
      throw CLI::ValidationError(fmt::format(
          "--mode {} asks for the {} strategy but --strategy {} for {}: give one of them (or the same in both)",
          shown_mode(mode), allocation_strategy_name(o.strategy), strategy, allocation_strategy_name(s)));
    o.strategy = s;
  }
  const std::string what =
      target_given ? fmt::format("--target-reduction {}", target) : fmt::format("--mode {}", shown_mode(mode));
  try {
    if (const std::string why = adaptive_target_beyond_limit(o, what, target_given); !why.empty())
      throw CLI::ValidationError(why);
  } catch (const InvalidArgument& e) {  // a target too close to 0 or 1 for a name (AdaptiveOptions)
    throw CLI::ValidationError(fmt::format("{}: {}", what, e.what()));
  }
  return o;
}

/// The validator of --target-reduction: a fraction in [0.000001, 0.999999]
/// with at most 6 decimals, what AdaptiveOptions::target_reduction keeps (it
/// is rounded to 0.000001, adaptive-rP's 4 decimals of a per cent): 1e-7 or
/// 5e-7 would be refused or rounded to 0.000001 after parsing, without a word.
inline CLI::Validator target_reduction_value() {
  return CLI::Validator(
      [](std::string& input) {
        const RealInterval range{0.000001, 0.999999, false, false};
        double value = 0;
        std::string error = parse_real_in(input, range, value);
        if (const size_t at = error.find("[1e-06,"); at != std::string::npos) error.replace(at, 7, "[0.000001,");
        if (error.empty() && std::fabs(value * 1e6 - std::round(value * 1e6)) > 1e-6)
          error = fmt::format("'{}' has more than 6 decimals (expected a fraction in [0.000001, 0.999999] with at "
                              "most 6 decimals, e.g. 0.8 = remove 80 %)",
                              input);
        return error;
      },
      "FLOAT in [0.000001, 0.999999]");
}

/// One line per planned layer: name, shape [N, K], weight entropy (bits), the
/// format chosen, its matrix's bytes and measured relative error; then the
/// totals (the layers' bytes, unquantized in their on-disk dtype before,
/// biases included: the figure the target refers to and the quantize report
/// prints) and whether the knapsack was exact.
/// With layers kept by --keep (AdaptivePlan::kept_layers), the header says the
/// target is of the planned layers alone and a last line gives the reduction
/// of all the linear layers, the kept ones included.
inline void print_adaptive_plan(const AdaptivePlan& plan) {
  const std::string kept =
      plan.kept_layers == 0
          ? std::string()
          : fmt::format(" ({} kept by --keep {} not in the budget)", plan.kept_layers,
                        plan.kept_layers == 1 ? "is" : "are");
  fmt::print("adaptive precision plan ({} strategy, target {:g} % of the {} planned linear layer{} {} bytes "
             "removed{}):\n",
             allocation_strategy_name(plan.strategy), std::round(plan.target_reduction * 1e6) / 1e4,
             plan.layers.size(), plan.layers.size() == 1 ? "'s" : "s'", held_dtype_names(plan), kept);
  fmt::print("  {:<40} {:>11} {:>8} {:>8} {:>10} {:>10}\n", "layer", "N x K", "entropy", "format", "bytes",
             "rel. error");
  for (const LayerAnalysis& l : plan.layers) {
    const CandidateAnalysis& c = l.choice();
    fmt::print("  {:<40} {:>11} {:>8.3f} {:>8} {:>10} {:>10.3e}\n", l.name, fmt::format("{}x{}", l.N, l.K),
               l.entropy_bits, c.format, human_bytes(c.bytes), c.rel_error);
  }
  fmt::print("  planned: {} -> {} ({:.2f} % smaller, biases included), estimated loss {:.4e}, {}\n",
             human_bytes(plan.bytes_before), human_bytes(plan.bytes_after),
             std::floor(plan.achieved_reduction * 1e4) / 1e2, plan.estimated_loss,
             plan.exact ? "exact knapsack" : "greedy knapsack (too many layer combinations for the exact one)");
  if (plan.kept_layers > 0)
    fmt::print("  with the {} layer{} kept by --keep: {} -> {} ({:.2f} % smaller, all these linear layers)\n",
               plan.kept_layers, plan.kept_layers == 1 ? "" : "s", human_bytes(plan.bytes_before + plan.kept_bytes),
               human_bytes(plan.bytes_after + plan.kept_bytes), std::floor(plan.overall_reduction() * 1e4) / 1e2);
}

}  // namespace kq::cli
