#pragma once
// The quantization modes that plain round-to-nearest makes (quantize_weight /
// quantize_linear): every valid mode but AWQ's, which needs calibration.
#include <string>
#include <vector>

#include "kq/quantize.hpp"

namespace kq::testing {

inline std::vector<std::string> rtn_mode_names() {
  std::vector<std::string> out;
  for (const std::string& n : valid_quant_mode_names())
    if (!parse_quant_mode(n).awq) out.push_back(n);
  return out;
}

}  // namespace kq::testing
