#pragma once
// How a loaded model's linear layers are held, as `kq eval` and `kq compare`
// report it ("weights:" line, weight_formats / lm_head_format in --json).
#include <fmt/format.h>

#include <map>
#include <string>

#include "format_util.hpp"
#include "kq/model.hpp"

namespace kq::cli {

/// How the model's linear layers are held: "nf4 (8 linear layers), lm_head f32",
/// "int8 x3, nf4 x5 (8 linear layers), lm_head f32" (an adaptive folder); fills
/// `counts` (format -> layers, lm_head excluded) and `lm_head` (its format, or "").
inline std::string weight_formats(Model& m, std::map<std::string, int>& counts, std::string& lm_head) {
  int layers = 0;
  for (const LinearSlot& s : m.linear_layers()) {
    if (s.is_lm_head) {
      lm_head = (*s.op)->format();
    } else {
      ++counts[(*s.op)->format()];
      ++layers;
    }
  }
  std::string list;
  for (const auto& [format, n] : counts)
    list += (list.empty() ? "" : ", ") + (counts.size() == 1 ? format : fmt::format("{} x{}", format, n));
  std::string r = fmt::format("{} ({})", list, count_noun(layers, "linear layer"));
  if (!lm_head.empty()) r += ", lm_head " + lm_head;
  return r;
}

}  // namespace kq::cli
