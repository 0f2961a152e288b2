#pragma once
// A model whose context (config.json's n_positions / max_position_embeddings)
// is shorter than the 2 positions an evaluation window needs: `kq eval` and
// `kq bench` without --ctx, and AWQ's calibration, use windows of the
// model's context, and said "perplexity window length (ctx) must be >= 2,
// got 1" (no --ctx was given) or "calibration window 1 must be in [2, 1]".
#include <filesystem>
#include <string>

#include "kq/config.hpp"
#include "kq/error.hpp"

namespace kq::cli {

/// Throws FormatError "<model>/config.json: n_positions is 1: the model's
/// context is too small to evaluate (<what> need at least 2 positions)",
/// naming the key as the file writes it (ModelConfig::size_keys), when
/// the model's context is shorter than 2 positions; `what` names the windows
/// ("perplexity windows", "AWQ calibration windows"). A config.json that
/// cannot be read is left to the model load, which names the problem.
inline void check_context_evaluable(const std::filesystem::path& model_dir, const std::string& what) {
  ModelConfig cfg;
  try {
    cfg = load_model_config(model_dir);
  } catch (const Error&) {
    return;
  }
  if (cfg.max_positions >= 2) return;
  raise<FormatError>(
      "{}: {} is {}: the model's context is too small to evaluate ({} need at least 2 positions)",
      (model_dir / "config.json").string(), cfg.size_keys.max_positions, cfg.max_positions, what);
}

}  // namespace kq::cli
