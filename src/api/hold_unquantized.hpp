#pragma once
// The last step of quantize_model and quantize_model_adaptive: what stays
// unquantized is held in its on-disk dtype, and the report says so.
#include "kq/model.hpp"
#include "kq/optimizer.hpp"

namespace kq {

/// model.hold_unquantized_in_disk_dtype(), then each layer of `report` that
/// is not quantized gets its op's format and bytes as now held ("bf16" /
/// "f16" for a 16-bit checkpoint). report.layers is in model.linear_layers()
/// order. Throws only std::bad_alloc.
void hold_unquantized_and_report(Model& model, QuantizeReport& report);

}  // namespace kq
