#pragma once
// The library names what it was given by its C++ names (a C++ caller has no
// command line): "BenchOptions::samples must be >= 0", "ExecContext::threads
// ...", "output folder 'q': ...". A `kq` user set those with options, so the
// CLI reports library errors and warnings with the option in place of the
// C++ name ("--samples must be >= 0", "--out 'q': ..."). Every C++ name a `kq`
// option sets, and that a library message may quote, is in this one table.
#include <string>
#include <string_view>
#include <utility>

namespace kq::cli {

/// `message` (a library error or warning) with each C++ name of the table
/// replaced by the `kq` option that sets it, e.g. "LatencyOptions::runs" by
/// "--runs". Text without such a name is returned unchanged.
inline std::string with_option_names(std::string message) {
  // Longer names before their prefixes ("...calibration.tokens" before "...calibration").
  static constexpr std::pair<std::string_view, std::string_view> kNames[] = {
      {"ExecContext::threads", "--threads"},
      {"ExecContext::device = Device::CPU", "--device cpu"},
      {"context length (ctx)", "context length (--ctx)"},  // evaluate_perplexity / compare_models' ctx
      // compare_models' models, as kq bench passes them: the unquantized model and a mode's quantization of it.
      {"compare_models: the reference model", "the unquantized model (the baseline)"},
      {"compare_models: the candidate model", "the quantized model"},
      {"SamplingParams::temperature", "--temperature"},
      {"SamplingParams::top_k", "--top-k"},
      {"SamplingParams::top_p", "--top-p"},
      {"BenchOptions::model_dir", "--model"},
      {"BenchOptions::text", "--text"},
      {"BenchOptions::modes", "--modes"},
      {"BenchOptions::ctx", "--ctx"},
      {"BenchOptions::context.threads", "--threads"},
      {"BenchOptions::context.device", "--device"},
      {"BenchOptions::samples", "--samples"},
      {"BenchOptions::keep_patterns", "--keep"},
      {"BenchOptions::calibration", "--calibration"},
      {"LatencyOptions::prompt_tokens", "--prompt-tokens"},
      {"LatencyOptions::decode_tokens", "--decode-tokens"},
      {"LatencyOptions::runs", "--runs"},
      {"QuantizeOptions::calibration.tokens", "--calibration FILE"},
      {"QuantizeOptions::keep_patterns", "--keep"},
      {"QuantizeOptions::quantize_lm_head", "--quantize-lm-head"},
      {"AdaptiveOptions::quantize_lm_head", "--quantize-lm-head"},
      // save_quantized_model / check_quantized_output: the `out` folder and `overwrite`.
      {"the output folder path is empty", "--out is empty"},
      {"output folder '", "--out '"},
      {"(overwrite = true replaces it)", "(use --overwrite to replace it)"},
      {"with overwrite = true", "with --overwrite"},
      {"and overwrite = true would not replace it", "and --overwrite would not replace it"},
      {"choose another output folder", "give another --out"},
  };
  for (const auto& [api, option] : kNames)
    for (size_t at = message.find(api); at != std::string::npos; at = message.find(api, at + option.size()))
      message.replace(at, api.size(), option);
  return message;
}

}  // namespace kq::cli
