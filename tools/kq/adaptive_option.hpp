#pragma once
// `kq quantize --mode adaptive`: the adaptive-precision options from the mode
// name and --target-reduction / --strategy, and the printed per-layer plan.
#include <fmt/format.h>

#include <string>

#include "format_util.hpp"
#include "kq/adaptive.hpp"

namespace kq::cli {

/// parse_adaptive_mode(mode), then --target-reduction (when given, in (0, 1))
/// and --strategy (when not empty) override what the name says.
inline AdaptiveOptions adaptive_options(const std::string& mode, bool target_given, double target,
                                        const std::string& strategy) {
  AdaptiveOptions o = parse_adaptive_mode(mode);
  if (target_given) o.target_reduction = target;
  if (!strategy.empty()) o.strategy = parse_allocation_strategy(strategy);
  return o;
}

/// One line per planned layer: name, shape [N, K], weight entropy (bits), the
/// format chosen, its bytes and measured relative error; then the totals.
inline void print_adaptive_plan(const AdaptivePlan& plan) {
  fmt::print("adaptive precision plan ({} strategy, target {:.1f} % of the FP32 linear bytes removed):\n",
             allocation_strategy_name(plan.strategy), 100.0 * plan.target_reduction);
  fmt::print("  {:<40} {:>11} {:>8} {:>8} {:>10} {:>10}\n", "layer", "N x K", "entropy", "format", "bytes",
             "rel. error");
  for (const LayerAnalysis& l : plan.layers) {
    const CandidateAnalysis& c = l.choice();
    fmt::print("  {:<40} {:>11} {:>8.3f} {:>8} {:>10} {:>10.3e}\n", l.name, fmt::format("{}x{}", l.N, l.K),
               l.entropy_bits, c.format, human_bytes(c.bytes), c.rel_error);
  }
  fmt::print("  planned: {} -> {} ({:.1f} % smaller), estimated loss {:.4e}\n",
             human_bytes(plan.bytes_before), human_bytes(plan.bytes_after), 100.0 * plan.achieved_reduction,
             plan.estimated_loss);
}

}  // namespace kq::cli
