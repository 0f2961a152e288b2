#pragma once
// A model whose context (config.json's n_positions / max_position_embeddings)
// is shorter than the 2 positions an evaluation window needs: `kq eval` and
// `kq bench` without --ctx, and AWQ's calibration, use windows of the
// model's context, and said "perplexity window length (ctx) must be >= 2,
// got 1" (no --ctx was given) or "calibration window 1 must be in [2, 1]".
#include <cstdint>
#include <filesystem>
#include <string>

#include <fmt/format.h>

#include "kq/config.hpp"
#include "kq/context.hpp"
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

/// Windows longer than this many tokens make a perplexity run on the CPU slow
/// (attention's cost grows with the square of the window): `kq eval` and `kq
/// bench` warn when the model's context, their default window, is longer.
inline constexpr int64_t kLongCpuWindow = 16384;

/// The warning (without "kq: warning: ") that `kq eval` / `kq bench` give
/// when no --ctx was given, `device` is the CPU and the model's context is
/// longer than kLongCpuWindow tokens (Llama 3.1's 131072, a yarn-scaled
/// Qwen2.5's): the default window stays the model's context (the evaluation
/// protocol), but one window over a long text then costs hours. "" when
/// none is due or config.json cannot be read (the model load names that).
inline std::string long_default_window_warning(const std::filesystem::path& model_dir, Device device) {
  if (device != Device::CPU) return "";
  ModelConfig cfg;
  try {
    cfg = load_model_config(model_dir);
  } catch (const Error&) {
    return "";
  }
  if (cfg.max_positions <= kLongCpuWindow) return "";
  return fmt::format("no --ctx given: the perplexity windows are the model's context, up to {} tokens "
                     "({} in {}); on the CPU the cost of a window grows with the square of its length, so a text "
                     "longer than {} tokens can take hours: give --ctx (e.g. --ctx 2048) for shorter windows",
                     cfg.max_positions, cfg.size_keys.max_positions, (model_dir / "config.json").string(),
                     kLongCpuWindow);
}

}  // namespace kq::cli
